//! The Prometheus endpoint (`[metrics] listen`), scraped with curl from host 2 across the
//! underlay while VM1 and VM2 (behind the kernel's VTEP) exchange traffic through a plugin that
//! drops some of it: the text parses (`promtool check metrics`, the parser and linter of
//! Prometheus itself), every counter `vtep stats` has is there with its labels, the counters
//! move between scrapes, the FDB gauges and the plugin's call-time histogram fill, OpenMetrics
//! is served to a scraper that asks for it, and bad requests (malformed, unknown paths and
//! methods, more connections than it serves) get an HTTP error while the endpoint keeps
//! serving. Off by default; an address already taken stops the start with its reason.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{KernelPeer, Netns, UdpSink, VtepDaemon, ping, udp_flood};

/// On the underlay: host 2 scrapes host 1 across the switch, as a Prometheus server would.
const ADDRESS: &str = "198.18.0.1:9464";

fn config(metrics: bool) -> String {
    let section = if metrics {
        format!("[metrics]\nlisten = \"{ADDRESS}\"\n")
    } else {
        String::new()
    };
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n{section}\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"acl\"\npath = {:?}\nbudget_us = 50000\n\
         config = {{ deny = [{{ ip_proto = \"udp\", dst_port = 9 }}] }}\n",
        wasm("vni-filter").display().to_string(),
    )
}

/// `curl` in `ns` with `args`: its exit status, and what it printed.
fn curl(ns: &Netns, args: &[&str]) -> Result<(bool, String)> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .context("running curl")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// A scrape of `/metrics`, checked by `promtool check metrics`.
fn scrape(ns: &Netns) -> Result<Samples> {
    let (ok, text) = curl(ns, &["--fail", &format!("http://{ADDRESS}/metrics")])?;
    ensure!(ok, "scraping /metrics failed: {text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting promtool (Debian's prometheus package)")?;
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().context("promtool's stdin")?;
        stdin.write_all(text.as_bytes())?;
    }
    let checked = promtool.wait_with_output()?;
    ensure!(
        checked.status.success(),
        "promtool check metrics refused the exposition:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    Samples::parse(&text)
}

/// The samples of a text exposition: `name{labels}` (labels sorted) to value.
#[derive(Debug)]
struct Samples(BTreeMap<String, f64>);

impl Samples {
    fn parse(text: &str) -> Result<Samples> {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("no value in {line:?}"))?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("value of {line:?}"))?;
            samples.insert(canonical(series)?, value);
        }
        Ok(Samples(samples))
    }

    /// The value of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        labels.sort();
        self.0
            .get(&format!("{name}{{{}}}", labels.join(",")))
            .copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        self.get(name, labels)
            .with_context(|| format!("no sample {name} {labels:?}"))
    }

    /// Samples of `name` whose labels include `labels` (any others too).
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = f64> + 'a {
        let prefix = format!("{name}{{");
        self.0
            .iter()
            .filter(move |(k, _)| {
                k.starts_with(&prefix)
                    && labels
                        .iter()
                        .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).sum()
    }
}

/// `name{b="2",a="1"}` as `name{a="1",b="2"}` (label values may hold commas; none here holds
/// an escaped quote).
fn canonical(series: &str) -> Result<String> {
    let Some((name, rest)) = series.split_once('{') else {
        return Ok(format!("{series}{{}}"));
    };
    let body = rest
        .strip_suffix('}')
        .with_context(|| format!("unclosed labels in {series:?}"))?;
    let mut labels = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                labels.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    labels.push(&body[start..]);
    labels.retain(|l| !l.is_empty());
    labels.sort_unstable();
    Ok(format!("{name}{{{}}}", labels.join(",")))
}

#[test]
fn scraped_during_traffic_the_counters_move_and_the_text_parses() -> Result<()> {
    let bed = KernelPeer::new()?;
    let (host1, vm1, vm2) = (&bed.host1, &bed.vm1, &bed.vm2);
    let scraper: &Netns = bed.host2.as_ref();
    let daemon = VtepDaemon::start(host1, &config(true))?;
    let before = scrape(scraper)?;

    // Traffic while scraping: pings (forwarded, learned) and a UDP flood to port 9, which the
    // plugin drops (its rule 1).
    let pings = ping(vm1, vm2.ipv4(), 5)?;
    ensure!(pings.received == 5, "pings through the VTEP: {pings:?}");
    let tag = 0x6d65_7472;
    let sink = UdpSink::start(vm2.netns(), 9, tag)?;
    let dst = SocketAddr::new(IpAddr::from(vm2.ipv4()), 9);
    let (during, flooded) = std::thread::scope(|scope| -> Result<_> {
        let flood =
            scope.spawn(|| udp_flood(vm1.netns(), dst, 128, Duration::from_millis(1500), tag, 8));
        std::thread::sleep(Duration::from_millis(500));
        let during = scrape(scraper);
        let flooded = flood
            .join()
            .map_err(|_| anyhow::anyhow!("the flood panicked"))?;
        Ok((during?, flooded?))
    })?;
    let received = sink.stop()?.received;
    ensure!(
        received == 0,
        "the plugin let {received} datagrams to port 9 through"
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = scrape(scraper)?;

    // The counters moved, and every scrape's build info is there.
    let vni = [("vni", "5001")];
    let frames = |s: &Samples| s.value("wasm_vtep_vni_from_ports_frames_total", &vni);
    ensure!(
        frames(&before)? < frames(&during)? && frames(&during)? < frames(&after)?,
        "frames from VM1's port did not grow over the scrapes: {} {} {}",
        frames(&before)?,
        frames(&during)?,
        frames(&after)?
    );
    // The flood's datagrams the daemon read (under load the kernel drops some before) were
    // dropped by the plugin's rule 1, and counted as filtered on the VNI too.
    let dropped = after.value(
        "wasm_vtep_plugin_dropped_frames_total",
        &[("plugin", "acl"), ("reason", "1")],
    )?;
    let filtered = after.value("wasm_vtep_vni_filtered_total", &vni)?;
    ensure!(
        dropped > 0.0 && dropped <= flooded.sent as f64 && filtered == dropped,
        "the plugin dropped {dropped} of {} datagrams sent, the VNI counted {filtered} filtered",
        flooded.sent
    );
    ensure!(
        after.value(
            "wasm_vtep_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("interfaces", "0.1.0,0.2.0")
            ]
        )? == 1.0
    );
    // The FDB: VM1 behind the port, VM2 learned behind the kernel's VTEP.
    let fdb = |kind: &str| after.value("wasm_vtep_fdb_entries", &[("vni", "5001"), ("kind", kind)]);
    ensure!(
        fdb("local")? >= 1.0 && fdb("remote")? >= 1.0 && fdb("evpn")? == 0.0,
        "FDB gauges"
    );
    // The plugin's calls as a histogram, in seconds: every call counted, buckets cumulative.
    let calls = after.value(
        "wasm_vtep_plugin_call_duration_seconds_count",
        &[("plugin", "acl")],
    )?;
    let inf = after.value(
        "wasm_vtep_plugin_call_duration_seconds_bucket",
        &[("plugin", "acl"), ("le", "+Inf")],
    )?;
    let filter_calls = after.value("wasm_vtep_plugin_filter_calls_total", &[("plugin", "acl")])?;
    ensure!(
        calls > 0.0 && inf == calls && calls >= filter_calls,
        "histogram: {calls} calls, +Inf {inf}, filter calls {filter_calls}"
    );
    let sum = after.value(
        "wasm_vtep_plugin_call_duration_seconds_sum",
        &[("plugin", "acl")],
    )?;
    ensure!(
        sum > 0.0 && sum < calls * 0.05,
        "call time sum {sum} s for {calls} calls"
    );
    ensure!(after.value("wasm_vtep_plugin_attached", &[("plugin", "acl")])? == 1.0);

    // Every counter of `vtep stats`, under its Prometheus name and labels.
    let stats = daemon.stats()?;
    let mut missing = Vec::new();
    let mut check = |name: String, labels: Vec<(&str, String)>| {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if after.matching(&name, &labels).next().is_none() {
            missing.push(format!("{name} {labels:?}"));
        }
    };
    for row in stats["vnis"].as_array().context("stats vnis")? {
        let vni = row["vni"].to_string();
        for key in row["counters"].as_object().context("vni counters")?.keys() {
            check(
                format!("wasm_vtep_vni_{key}_total"),
                vec![("vni", vni.clone())],
            );
        }
    }
    for reason in stats["drops"].as_object().context("stats drops")?.keys() {
        check(
            "wasm_vtep_drops_total".into(),
            vec![("reason", reason.clone())],
        );
    }
    let tx_reasons = [
        "congested",
        "link_down",
        "too_big",
        "unreachable",
        "invalid",
        "filtered",
        "no_such_port",
        "wrong_family",
        "other",
    ];
    for key in stats["io"].as_object().context("stats io")?.keys() {
        let (name, labels) = if let Some(worker) = key
            .strip_prefix("worker")
            .and_then(|k| k.split_once('_'))
            .filter(|(n, _)| n.parse::<usize>().is_ok())
        {
            (
                format!("wasm_vtep_{}_total", worker.1),
                vec![("worker", worker.0.to_owned())],
            )
        } else if let Some((side, reason)) = ["port_tx_", "underlay_tx_"].iter().find_map(|p| {
            key.strip_prefix(p)
                .filter(|r| tx_reasons.contains(r))
                .map(|r| (p, r))
        }) {
            (
                format!("wasm_vtep_{side}dropped_total"),
                vec![("reason", reason.to_owned())],
            )
        } else {
            (format!("wasm_vtep_{key}_total"), vec![])
        };
        check(name, labels);
    }
    for (plugin, counters) in stats["plugins"].as_object().context("stats plugins")? {
        for key in counters.as_object().context("plugin counters")?.keys() {
            match key.strip_prefix("plugin.") {
                Some(own) => check(
                    "wasm_vtep_plugin_events_total".into(),
                    vec![("plugin", plugin.clone()), ("event", own.to_owned())],
                ),
                // The plugin's drops are exported by reason only (their sum is `dropped`).
                None if key == "dropped" => check(
                    "wasm_vtep_plugin_dropped_frames_total".into(),
                    vec![("plugin", plugin.clone())],
                ),
                None => check(
                    format!("wasm_vtep_plugin_{key}_total"),
                    vec![("plugin", plugin.clone())],
                ),
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "counters of vtep stats missing from the scrape: {missing:#?}"
    );
    // Per port and worker: VM1's frames are on port vm1, summed over the workers.
    ensure!(after.sum("wasm_vtep_port_rx_frames_total", &[("port", "vm1")]) >= 5.0);

    // OpenMetrics for a scraper that asks for it.
    let (ok, open) = curl(
        scraper,
        &[
            "--fail",
            "-H",
            "Accept: application/openmetrics-text;version=1.0.0",
            "-D",
            "/dev/stdout",
            &format!("http://{ADDRESS}/metrics"),
        ],
    )?;
    ensure!(
        ok && open
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "OpenMetrics headers: {}",
        open.lines().take(5).collect::<Vec<_>>().join(" | ")
    );
    // OpenMetrics names a counter's family without `_total` and its samples with it, and
    // has an info type.
    for line in [
        "# TYPE wasm_vtep_vni_from_ports_frames counter",
        "# TYPE wasm_vtep_build info",
        "# TYPE wasm_vtep_plugin_call_duration_seconds histogram",
    ] {
        ensure!(open.lines().any(|l| l == line), "OpenMetrics: no {line:?}");
    }
    for sample in [
        "wasm_vtep_vni_from_ports_frames_total{vni=\"5001\"} ",
        "wasm_vtep_build_info{",
        "wasm_vtep_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"acl\"} ",
    ] {
        ensure!(
            open.lines().any(|l| l.starts_with(sample)),
            "OpenMetrics: no sample {sample:?} among\n{}",
            open.lines()
                .filter(|l| l.starts_with(sample.split('{').next().unwrap_or(sample)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    ensure!(
        open.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    // Bad requests: an HTTP error each, and the endpoint goes on.
    let status = |args: &[&str]| -> Result<String> {
        let (_, code) = curl(
            scraper,
            &[&["-o", "/dev/null", "-w", "%{http_code}"], args].concat(),
        )?;
        Ok(code)
    };
    ensure!(status(&[&format!("http://{ADDRESS}/nothing")])? == "404");
    ensure!(status(&["-X", "POST", &format!("http://{ADDRESS}/metrics")])? == "405");
    let garbage = scraper.exec(
        "bash",
        &["-c", "exec 3<>/dev/tcp/198.18.0.1/9464; printf 'NOT HTTP AT ALL\\r\\n\\r\\n' >&3; timeout 5 head -c 12 <&3"],
    )?;
    ensure!(
        garbage.starts_with("HTTP/1.1 400"),
        "a malformed request got {garbage:?}"
    );
    ensure!(
        scrape(scraper).is_ok(),
        "the endpoint stopped serving after bad requests"
    );

    // Sixteen connections that never send a request hold every place: one more is told 503,
    // and once they go, scrapes are answered again.
    {
        let _inside = scraper.enter()?;
        let idle = (0..16)
            .map(|_| std::net::TcpStream::connect(ADDRESS))
            .collect::<Result<Vec<_>, _>>()
            .context("16 idle connections")?;
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = std::net::TcpStream::connect(ADDRESS)?;
        extra.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut extra, &mut answer)?;
        ensure!(
            answer.starts_with("HTTP/1.1 503"),
            "the 17th connection got {answer:?}"
        );
        drop(idle);
    }
    std::thread::sleep(Duration::from_millis(200));
    ensure!(
        scrape(scraper).is_ok(),
        "the endpoint stopped serving after its connections were full"
    );
    daemon.stop()
}

#[test]
fn off_by_default_and_a_taken_address_stops_the_start() -> Result<()> {
    let bed = KernelPeer::new()?;
    let host1_ns: &Netns = bed.host1.as_ref();
    let quiet = VtepDaemon::start(&bed.host1, &config(false))?;
    let listening = host1_ns.exec("ss", &["-Hltn"])?;
    ensure!(
        listening.trim().is_empty(),
        "a daemon without [metrics] listens: {listening}"
    );
    quiet.stop()?;

    // Another program (here the test) holds the port: the daemon says so and does not start.
    let holder = {
        let _inside = host1_ns.enter()?;
        std::net::TcpListener::bind(ADDRESS).context("holding the metrics port")?
    };
    match VtepDaemon::start(&bed.host1, &config(true)) {
        Ok(_) => bail!("the daemon started with its metrics address taken"),
        Err(e) => {
            let why = format!("{e:#}");
            ensure!(
                why.contains("metrics endpoint 198.18.0.1:9464") && why.contains("in use"),
                "the error does not say the address is taken: {why}"
            );
        }
    }
    drop(holder);
    Ok(())
}
