//! The chart: delivered packets/s by frame size, one bar per case (median) with a min-max
//! whisker, as an SVG (plotters; text is left to the viewer's fonts).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::summary::{CaseSummary, FRAME_SIZES, fmt_num};

const PALETTE: [RGBColor; 6] = [
    RGBColor(90, 110, 140),  // kernel
    RGBColor(230, 120, 30),  // wasm-vtep
    RGBColor(40, 150, 70),   // + plugin, cache on
    RGBColor(140, 200, 140), // + plugin, cache off
    RGBColor(130, 80, 170),  // + 10k MACs
    RGBColor(180, 60, 60),
];

/// Draws the chart of `summaries` to `path`; `subtitle` names the commit and date.
pub(crate) fn draw(path: &Path, summaries: &[CaseSummary], subtitle: &str) -> Result<()> {
    draw_inner(path, summaries, subtitle).map_err(|e| anyhow!("drawing the chart: {e}"))
}

fn draw_inner(
    path: &Path,
    summaries: &[CaseSummary],
    subtitle: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let cases: Vec<&CaseSummary> = summaries
        .iter()
        .filter(|s| FRAME_SIZES.iter().any(|f| s.metrics.contains_key(&pps(*f))))
        .collect();
    let top = cases
        .iter()
        .flat_map(|s| FRAME_SIZES.iter().filter_map(|f| s.metrics.get(&pps(*f))))
        .map(|s| s.max)
        .fold(1.0, f64::max);

    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(60);
    title.draw(&Text::new(
        "UDP flood VM1 to VM2: delivered packets/s by frame size (median, min-max)",
        (480, 8),
        ("sans-serif", 20)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    title.draw(&Text::new(
        subtitle.to_owned(),
        (480, 36),
        ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;

    let groups = FRAME_SIZES.len() as f64;
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..groups, 0.0..top * 1.2)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("delivered packets/s")
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()?;

    let n = cases.len().max(1) as f64;
    let width = 0.8 / n;
    for (i, s) in cases.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        let mut labels = Vec::new();
        for (g, frame) in FRAME_SIZES.iter().enumerate() {
            let Some(v) = s.metrics.get(&pps(*frame)) else {
                continue;
            };
            let x0 = g as f64 + 0.1 + i as f64 * width;
            let (x1, mid) = (x0 + width * 0.9, x0 + width * 0.45);
            bars.push(Rectangle::new([(x0, 0.0), (x1, v.median)], color.filled()));
            let cap = width * 0.2;
            whiskers.push(PathElement::new(vec![(mid, v.min), (mid, v.max)], BLACK));
            for y in [v.min, v.max] {
                whiskers.push(PathElement::new(
                    vec![(mid - cap, y), (mid + cap, y)],
                    BLACK,
                ));
            }
            labels.push(Text::new(
                fmt_num(v.median),
                (mid, v.max.max(v.median)),
                ("sans-serif", 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ));
        }
        chart
            .draw_series(bars)?
            // Trailing spaces widen the legend box: the font-less layout estimate is a little
            // narrower than the viewer's sans-serif, and SVG does not draw them.
            .label(format!("{}   ", s.case))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        chart.draw_series(whiskers)?;
        chart.draw_series(labels)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;

    // Group names under the axis, centred on each group (backend_coord is in the whole
    // image's pixels, so they go on the root area).
    for (g, frame) in FRAME_SIZES.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            format!("{frame}-byte frames"),
            (x, y + 10),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.present()?;
    Ok(())
}

fn pps(frame: usize) -> String {
    format!("udp{frame}_pps")
}
