//! `iperf3` between namespaces: a server guard and a client run whose JSON report is reduced to
//! the throughput and loss figures tests and the benchmark compare.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::Netns;
use crate::process::Process;

/// The port both sides use unless told otherwise.
pub const IPERF_PORT: u16 = 5201;

/// `iperf3 -s` running inside a namespace; killed on drop. Serves one test at a time.
#[derive(Debug)]
pub struct IperfServer {
    process: Process,
    port: u16,
}

impl IperfServer {
    /// Starts a server on [`IPERF_PORT`] and returns once it listens.
    pub fn start(ns: &impl AsRef<Netns>) -> Result<IperfServer> {
        IperfServer::start_on(ns, IPERF_PORT)
    }

    /// Starts a server on `port` and returns once it listens.
    pub fn start_on(ns: &impl AsRef<Netns>, port: u16) -> Result<IperfServer> {
        let p = port.to_string();
        let mut process = Process::start(ns, "iperf3", &["-s", "-p", &p, "--forceflush"])?;
        process.wait_for_stdout("Server listening", Duration::from_secs(10))?;
        Ok(IperfServer { process, port })
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process (for its logs).
    pub fn process(&self) -> &Process {
        &self.process
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfOptions {
    /// Test length (`-t`, whole seconds, at least 1).
    pub duration: Duration,
    /// UDP instead of TCP (`-u`).
    pub udp: bool,
    /// Target rate in bit/s (`-b`); iperf3's default is unlimited for TCP, 1 Mbit/s for UDP.
    pub bitrate: Option<u64>,
    /// Write size, or UDP payload size (`-l`).
    pub length: Option<u32>,
    /// Server sends, client receives (`-R`).
    pub reverse: bool,
    /// Parallel streams (`-P`).
    pub streams: u32,
    /// Server port (`-p`).
    pub port: u16,
}

impl IperfOptions {
    /// One TCP stream for `duration`.
    pub fn tcp(duration: Duration) -> IperfOptions {
        IperfOptions {
            duration,
            udp: false,
            bitrate: None,
            length: None,
            reverse: false,
            streams: 1,
            port: IPERF_PORT,
        }
    }

    /// One UDP stream at `bitrate` bit/s (0: as fast as possible) for `duration`.
    pub fn udp(duration: Duration, bitrate: u64) -> IperfOptions {
        IperfOptions {
            udp: true,
            bitrate: Some(bitrate),
            ..IperfOptions::tcp(duration)
        }
    }
}

/// The figures of one run, receiver side where it matters.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfReport {
    /// Throughput the sender achieved, bit/s.
    pub sent_bps: f64,
    /// Throughput that arrived, bit/s: the number to compare.
    pub received_bps: f64,
    /// Bytes that arrived.
    pub received_bytes: u64,
    /// TCP retransmissions (TCP only).
    pub retransmits: Option<u64>,
    /// Datagrams sent and lost, and the loss in percent (UDP only).
    pub udp_loss: Option<UdpLoss>,
    /// iperf3's full JSON report.
    pub json: Value,
}

/// UDP loss figures from the receiver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpLoss {
    /// Datagrams sent.
    pub packets: u64,
    /// Datagrams that did not arrive.
    pub lost: u64,
    /// `lost / packets` in percent.
    pub percent: f64,
}

/// Runs `iperf3 -c SERVER -J` inside `client` and parses its report. Fails if iperf3 reports
/// an error (connection refused, …) or runs well past its duration.
pub fn iperf3(
    client: &impl AsRef<Netns>,
    server: impl Into<IpAddr>,
    opts: &IperfOptions,
) -> Result<IperfReport> {
    let server = server.into().to_string();
    // iperf3 reads -t as an integer.
    let secs = opts.duration.as_secs().max(1).to_string();
    let (port, streams) = (opts.port.to_string(), opts.streams.to_string());
    let mut args = vec![
        "-c", &server, "-p", &port, "-t", &secs, "-P", &streams, "-J",
    ];
    args.extend(["--connect-timeout", "5000"]);
    let bitrate = opts.bitrate.map(|b| b.to_string());
    let length = opts.length.map(|l| l.to_string());
    if opts.udp {
        args.push("-u");
    }
    if let Some(b) = &bitrate {
        args.extend(["-b", b]);
    }
    if let Some(l) = &length {
        args.extend(["-l", l]);
    }
    if opts.reverse {
        args.push("-R");
    }
    let mut process = Process::start(client, "iperf3", &args)?;
    let status = process.wait(opts.duration + Duration::from_secs(20))?;
    let json: Value = serde_json::from_str(&process.stdout())
        .with_context(|| format!("iperf3 printed no JSON ({status})\n{}", process.log_tails()))?;
    if let Some(err) = json.get("error").and_then(Value::as_str) {
        bail!("iperf3 -c {server}: {err}");
    }
    parse_report(json)
}

fn parse_report(json: Value) -> Result<IperfReport> {
    let end = json.get("end").context("iperf3 report has no \"end\"")?;
    let sent = end.get("sum_sent").context("no end.sum_sent")?;
    // UDP receiver figures are in sum_received (3.10+) or sum (older).
    let received = end
        .get("sum_received")
        .or(end.get("sum"))
        .context("no end.sum_received")?;
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let udp_loss = match (u(received, "packets"), u(received, "lost_packets")) {
        (Some(packets), Some(lost)) => Some(UdpLoss {
            packets,
            lost,
            percent: f(received, "lost_percent").unwrap_or(0.0),
        }),
        _ => None,
    };
    Ok(IperfReport {
        sent_bps: f(sent, "bits_per_second").context("no sent bits_per_second")?,
        received_bps: f(received, "bits_per_second").context("no received bits_per_second")?,
        received_bytes: u(received, "bytes").context("no received bytes")?,
        retransmits: u(sent, "retransmits"),
        udp_loss,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_udp_reports() {
        let tcp: Value = serde_json::from_str(
            r#"{"end":{"sum_sent":{"bytes":1764229120,"bits_per_second":1.41e10,"retransmits":14},
                "sum_received":{"bytes":1764229014,"bits_per_second":1.40e10}}}"#,
        )
        .unwrap();
        let r = parse_report(tcp).unwrap();
        assert_eq!((r.sent_bps, r.received_bps), (1.41e10, 1.40e10));
        assert_eq!((r.received_bytes, r.retransmits), (1764229014, Some(14)));
        assert!(r.udp_loss.is_none());

        let udp: Value = serde_json::from_str(
            r#"{"end":{"sum_sent":{"bytes":100,"bits_per_second":800.0,"packets":10,"lost_packets":0},
                "sum_received":{"bytes":90,"bits_per_second":720.0,"packets":10,"lost_packets":1,
                "lost_percent":10.0}}}"#,
        )
        .unwrap();
        let r = parse_report(udp).unwrap();
        assert_eq!(
            r.udp_loss,
            Some(UdpLoss {
                packets: 10,
                lost: 1,
                percent: 10.0
            })
        );
        assert_eq!(r.received_bps, 720.0);

        assert!(parse_report(serde_json::json!({"start": {}})).is_err());
    }
}
