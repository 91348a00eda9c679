//! `Capture`: `tcpdump` running in the background on one interface of one namespace, and what
//! it saw once stopped — raw packets to decode, or tcpdump's own text to read as a user would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::pcap::{CapturedPacket, LINKTYPE_ETHERNET, parse_pcap};
use super::vxlan_view::VxlanPacket;
use crate::netns::{Netns, run};
use crate::paths::artifact_path;
use crate::process::Process;

/// A running capture; tcpdump is killed if this drops without [`Capture::stop`].
#[derive(Debug)]
#[must_use = "dropping a Capture stops it and discards what it saw"]
pub struct Capture {
    tcpdump: Process,
    pcap: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i IFACE -w FILE FILTER` inside `ns` (filter in pcap-filter syntax, e.g.
    /// `"udp port 4789"`; `""` for everything) and returns once tcpdump reports it is listening,
    /// so nothing sent afterwards is missed.
    pub fn start(ns: &impl AsRef<Netns>, iface: &str, filter: &str) -> Result<Capture> {
        Capture::start_with(ns, iface, filter, &[])
    }

    /// As [`Capture::start`], with more of tcpdump's options (`["-s", "96"]`: keep only the
    /// first 96 bytes of each packet).
    pub fn start_with(
        ns: &impl AsRef<Netns>,
        iface: &str,
        filter: &str,
        options: &[&str],
    ) -> Result<Capture> {
        let ns = ns.as_ref();
        let pcap = artifact_path(&format!("{}-{iface}", ns.name()), "pcap")?;
        let path = pcap.to_string_lossy().into_owned();
        // -U: write each packet at once; --immediate-mode: no kernel-side batching delay;
        // -Z root: keep the right to write the file under a root-owned directory.
        let mut args = vec![
            "-i",
            iface,
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-w",
            &path,
        ];
        args.extend(options);
        args.extend(filter.split_whitespace());
        let mut tcpdump = Process::start(ns, "tcpdump", &args)?;
        tcpdump.wait_for_stderr("listening on", Duration::from_secs(10))?;
        Ok(Capture { tcpdump, pcap })
    }

    /// Lets the last packets in flight land (until nothing new arrived for 100 ms, at most 2 s),
    /// stops tcpdump and returns what it captured.
    pub fn stop(mut self) -> Result<Captured> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = file_len(&self.pcap);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = file_len(&self.pcap);
            if now == last || Instant::now() >= deadline {
                break;
            }
            last = now;
        }
        self.tcpdump.signal(libc::SIGINT)?;
        let status = self.tcpdump.wait(Duration::from_secs(5))?;
        if !status.success() {
            bail!("tcpdump failed ({status})\n{}", self.tcpdump.log_tails());
        }
        let bytes = std::fs::read(&self.pcap)
            .with_context(|| format!("reading {}", self.pcap.display()))?;
        let (linktype, packets) = parse_pcap(&bytes)?;
        let dropped = self.tcpdump.stderr().lines().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")?
                .trim()
                .parse()
                .ok()
        });
        Ok(Captured {
            linktype,
            packets,
            dropped_by_kernel: dropped,
            pcap: self.pcap.clone(),
        })
    }
}

fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What a [`Capture`] saw.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The pcap link type ([`LINKTYPE_ETHERNET`] for a bridge or veth).
    pub linktype: u32,
    /// The packets, in capture order.
    pub packets: Vec<CapturedPacket>,
    /// tcpdump's "packets dropped by kernel" count: non-zero means `packets` is incomplete.
    pub dropped_by_kernel: Option<u64>,
    /// The pcap file, kept for opening in Wireshark.
    pub pcap: PathBuf,
}

impl Captured {
    /// The packets that decode as VXLAN to UDP `port` (empty unless the link type is Ethernet).
    pub fn vxlan(&self, port: u16) -> Vec<VxlanPacket<'_>> {
        if self.linktype != LINKTYPE_ETHERNET {
            return Vec::new();
        }
        self.packets
            .iter()
            .filter_map(|p| VxlanPacket::decode(&p.data, port))
            .collect()
    }

    /// tcpdump's own rendering, as `tcpdump -nn -e -r FILE` prints it: one line per packet,
    /// and for VXLAN on port 4789 a second line with the inner frame.
    pub fn text(&self) -> Result<String> {
        // Reading a file touches no network: fine to run outside any namespace.
        let path = self.pcap.to_string_lossy();
        let out = run(std::process::Command::new("tcpdump").args(["-nn", "-e", "-r", &path]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
