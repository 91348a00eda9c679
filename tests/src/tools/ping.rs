//! `ping` from inside a namespace, with its summary parsed: how many answers came back and how
//! long they took.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The summary lines of one `ping` run.
#[derive(Debug, Clone, PartialEq)]
pub struct PingStats {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received (duplicates not counted).
    pub received: u32,
    /// Packet loss as ping reports it, in percent.
    pub loss_percent: f64,
    /// Round-trip times; `None` when nothing came back.
    pub rtt: Option<Rtt>,
    /// The whole output, for assertion messages.
    pub output: String,
}

/// `rtt min/avg/max/mdev`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtt {
    /// Fastest round trip.
    pub min: Duration,
    /// Mean round trip.
    pub avg: Duration,
    /// Slowest round trip.
    pub max: Duration,
    /// Mean deviation.
    pub mdev: Duration,
}

impl PingStats {
    /// Every request was answered.
    pub fn all_received(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// Pings `to` `count` times from inside `from` (0.2 s apart, 1 s timeout per reply).
///
/// Returns the statistics whether or not replies came back: a test asserts on them. Fails only
/// if ping itself could not run (bad address, no route, …).
pub fn ping(from: &impl AsRef<Netns>, to: impl Into<IpAddr>, count: u32) -> Result<PingStats> {
    ping_with(from, to, count, &[])
}

/// [`ping`] with extra arguments, e.g. `&["-s", "1472", "-M", "do"]` for a full-size frame that
/// must not be fragmented.
/// Three pings from `from` to `to` all answered; panics (a test's assertion) saying which were
/// lost, with ping's output.
pub fn assert_pings(from: &impl AsRef<Netns>, to: impl Into<IpAddr>) {
    let to = to.into();
    let stats = ping(from, to, 3).expect("ping runs");
    assert!(
        stats.all_received(),
        "ping {to} lost packets:\n{}",
        stats.output
    );
    assert!(
        stats.rtt.is_some(),
        "no round trip times:\n{}",
        stats.output
    );
}

/// Two pings from `from` to `to`, none answered; panics (a test's assertion) otherwise.
pub fn assert_no_pings(from: &impl AsRef<Netns>, to: impl Into<IpAddr>) {
    let to = to.into();
    let stats = ping(from, to, 2).expect("ping runs");
    assert_eq!(
        stats.received, 0,
        "ping {to} got through:\n{}",
        stats.output
    );
}

pub fn ping_with(
    from: &impl AsRef<Netns>,
    to: impl Into<IpAddr>,
    count: u32,
    extra: &[&str],
) -> Result<PingStats> {
    let to = to.into().to_string();
    let count = count.to_string();
    let out = from
        .as_ref()
        .command("ping")
        .args(["-n", "-c", &count, "-i", "0.2", "-W", "1"])
        .args(extra)
        .arg(&to)
        .output()
        .context("running ping")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit status 1 means "some replies missing"; the summary still says what happened.
    match parse_ping(&stdout) {
        Some(stats) => Ok(stats),
        None => bail!(
            "ping {to} failed ({}): {}{}",
            out.status,
            stdout.trim(),
            stderr.trim()
        ),
    }
}

/// One echo reply: which request it answered and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// The request's `icmp_seq` (ping numbers requests from 1, in the order it sends them).
    pub seq: u32,
    /// Its round-trip time (`time=`, which ping prints to the microsecond).
    pub rtt: Duration,
}

/// Pings `to` `count` times from inside `from`, `interval` apart (root may go down to 2 ms;
/// 10 ms is the usual latency probe), and returns the summary with every reply's round-trip
/// time in order of arrival (`time=` of each reply line, which ping prints to the microsecond).
pub fn ping_samples(
    from: &impl AsRef<Netns>,
    to: impl Into<IpAddr>,
    count: u32,
    interval: Duration,
) -> Result<(PingStats, Vec<Duration>)> {
    let (stats, replies) = ping_replies(from, to, count, interval)?;
    Ok((stats, replies.iter().map(|r| r.rtt).collect()))
}

/// [`ping_samples`] with each reply's sequence number, to tell which requests went unanswered
/// and when: request `seq` left about `(seq - 1) * interval` after ping started. Duplicate
/// replies (`DUP!`) are left out, as ping leaves them out of `received`.
pub fn ping_replies(
    from: &impl AsRef<Netns>,
    to: impl Into<IpAddr>,
    count: u32,
    interval: Duration,
) -> Result<(PingStats, Vec<PingReply>)> {
    let to = to.into().to_string();
    let (count, interval) = (count.to_string(), format!("{:.3}", interval.as_secs_f64()));
    let out = from
        .as_ref()
        .command("ping")
        .args(["-n", "-c", &count, "-i", &interval, "-W", "1"])
        .arg(&to)
        .output()
        .context("running ping")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_ping(&stdout) {
        Some(stats) => Ok((stats, parse_replies(&stdout))),
        None => bail!(
            "ping {to} failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// The nearest-rank `p`th percentile (0..=100) of `rtts`, in any order; `None` if empty.
pub fn percentile(rtts: &[Duration], p: usize) -> Option<Duration> {
    let mut sorted = rtts.to_vec();
    sorted.sort_unstable();
    let rank = (p.min(100) * sorted.len()).div_ceil(100);
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The `icmp_seq=N ... time=X ms` of every reply line but duplicates.
fn parse_replies(output: &str) -> Vec<PingReply> {
    output
        .lines()
        .filter(|l| l.contains(" bytes from ") && !l.contains("DUP!"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let seq = words
                .clone()
                .find_map(|w| w.strip_prefix("icmp_seq="))?
                .parse()
                .ok()?;
            let ms = words.find_map(|w| w.strip_prefix("time="))?;
            let rtt = Duration::try_from_secs_f64(ms.parse::<f64>().ok()? / 1000.0).ok()?;
            Some(PingReply { seq, rtt })
        })
        .collect()
}

fn parse_ping(output: &str) -> Option<PingStats> {
    let summary = output.lines().find(|l| l.contains("packets transmitted"))?;
    let mut transmitted = None;
    let mut received = None;
    let mut loss_percent = None;
    for part in summary.split(',').map(str::trim) {
        if let Some(n) = part.strip_suffix(" packets transmitted") {
            transmitted = n.parse().ok();
        } else if let Some(n) = part.strip_suffix(" received") {
            received = n.parse().ok();
        } else if let Some(p) = part.strip_suffix("% packet loss") {
            loss_percent = p.parse().ok();
        }
    }
    let rtt = output.lines().find_map(|l| {
        // "rtt min/avg/max/mdev = 0.050/0.070/0.090/0.010 ms", and ", pipe N" after it when
        // replies were outstanding together (a slow first ARP).
        let values = l.strip_prefix("rtt min/avg/max/mdev = ")?;
        let values = values.split_once(" ms")?.0;
        let ms: Vec<f64> = values
            .split('/')
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let d = |v: f64| Duration::try_from_secs_f64(v / 1000.0).ok();
        match ms[..] {
            [min, avg, max, mdev] => Some(Rtt {
                min: d(min)?,
                avg: d(avg)?,
                max: d(max)?,
                mdev: d(mdev)?,
            }),
            _ => None,
        }
    });
    Some(PingStats {
        transmitted: transmitted?,
        received: received?,
        loss_percent: loss_percent?,
        rtt,
        output: output.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_success() {
        let out = "PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data.\n\
            64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.123 ms\n\n\
            --- 192.0.2.2 ping statistics ---\n\
            3 packets transmitted, 3 received, 0% packet loss, time 405ms\n\
            rtt min/avg/max/mdev = 0.050/0.070/0.090/0.010 ms\n";
        let s = parse_ping(out).unwrap();
        assert_eq!((s.transmitted, s.received), (3, 3));
        assert!(s.all_received());
        assert_eq!(s.loss_percent, 0.0);
        let rtt = s.rtt.unwrap();
        assert_eq!(rtt.min, Duration::from_micros(50));
        assert_eq!(rtt.max, Duration::from_micros(90));
        let piped = "3 packets transmitted, 3 received, 0% packet loss, time 408ms\n\
            rtt min/avg/max/mdev = 592.897/796.947/1001.088/166.643 ms, pipe 3\n";
        let rtt = parse_ping(piped)
            .unwrap()
            .rtt
            .expect("rtt with a pipe suffix");
        assert_eq!(rtt.max, Duration::from_micros(1_001_088));
    }

    #[test]
    fn parses_reply_times() {
        let out = "PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data.\n\
            64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.123 ms\n\
            64 bytes from 192.0.2.2: icmp_seq=2 ttl=64 time=12.5 ms\n\
            64 bytes from 192.0.2.2: icmp_seq=3 ttl=64 time=junk ms\n\
            rtt min/avg/max/mdev = 0.050/0.070/0.090/0.010 ms\n";
        assert_eq!(
            parse_replies(out),
            [
                PingReply {
                    seq: 1,
                    rtt: Duration::from_micros(123)
                },
                PingReply {
                    seq: 2,
                    rtt: Duration::from_micros(12_500)
                }
            ]
        );
        assert!(parse_replies("").is_empty());
        let dup = "64 bytes from 192.0.2.2: icmp_seq=4 ttl=64 time=0.2 ms (DUP!)\n";
        assert!(parse_replies(dup).is_empty());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n: u64| Duration::from_millis(n);
        let v: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&v, 50), Some(ms(50)));
        assert_eq!(percentile(&v, 99), Some(ms(99)));
        assert_eq!(percentile(&v, 100), Some(ms(100)));
        assert_eq!(percentile(&v, 0), Some(ms(1)));
        assert_eq!(percentile(&[ms(7)], 99), Some(ms(7)));
        let v: Vec<Duration> = (1..=400).map(ms).collect();
        assert_eq!(percentile(&v, 99), Some(ms(396)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn parses_loss_with_errors() {
        let out = "--- 192.0.2.9 ping statistics ---\n\
            3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss, time 2042ms\n";
        let s = parse_ping(out).unwrap();
        assert_eq!((s.transmitted, s.received), (3, 1));
        assert!((s.loss_percent - 66.6667).abs() < 1e-9);
        assert!(!s.all_received());
        assert!(s.rtt.is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_ping("").is_none());
        assert!(parse_ping("x packets transmitted, y received").is_none());
        assert!(
            parse_ping(
                "3 packets transmitted, 3 received, 0% packet loss\nrtt min/avg/max/mdev = 1/2 ms"
            )
            .unwrap()
            .rtt
            .is_none()
        );
    }
}
