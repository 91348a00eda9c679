//! [`CaptureFile`]: the packets of a capture file (pcap or pcapng, as tcpdump and Wireshark
//! write them), one at a time, for `vtep plugin test`.
//!
//! Contract: the format is told by the file's magic number. Every packet comes out numbered
//! from 1 in file order, with its time since the capture's first packet, its bytes as
//! captured and its length on the wire (more than its bytes when the capture cut it: a
//! snapshot length). A packet of a link type other than Ethernet is returned as such, to be
//! counted; only a file that cannot be read further ends the iteration early, with the error.
//! Reading is pcap-file's (a well-kept crate that reads both formats and their byte orders),
//! with two of its shortcuts undone here: pcapng timestamps are scaled by their interface's
//! `if_tsresol` and `if_tsoffset` (pcap-file 2.0 takes every one as nanoseconds; tcpdump
//! and Wireshark write microseconds), and pcap records cut by a snapshot length are read raw
//! (its checked reader refuses them).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

/// The first four bytes of a pcapng file (a section header block).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a pcap or pcapng file, or a damaged one.
    #[error("not a readable pcap or pcapng file: {0}")]
    Format(String),
}

/// One packet of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Its number in the file, from 1 (as Wireshark numbers them).
    pub number: u64,
    /// Since the capture's first packet.
    pub time: Duration,
    /// Its link layer: Ethernet, or another kind no VTEP port carries.
    pub link: Link,
    /// The bytes captured.
    pub data: Vec<u8>,
    /// Its length on the wire.
    pub wire_len: u32,
}

impl CapturedPacket {
    /// The capture has less of it than the wire had.
    pub fn is_cut(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.wire_len)
    }
}

/// A packet's link layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet frames.
    Ethernet,
    /// Another link type (its number in the pcap registry), e.g. 113 for `tcpdump -i any`.
    Other(u32),
    /// A pcapng packet of an interface the file does not describe (by its id).
    Unknown(u32),
}

impl From<DataLink> for Link {
    fn from(d: DataLink) -> Link {
        match d {
            DataLink::ETHERNET => Link::Ethernet,
            other => Link::Other(u32::from(other)),
        }
    }
}

/// What a packet block needs of its pcapng interface.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Link,
    /// `if_tsresol`: a power of 10 (or, with the top bit set, of 2) of a second per unit.
    resolution: u8,
    /// `if_tsoffset`: seconds to add.
    offset: u64,
}

impl Interface {
    /// pcapng's default resolution: microseconds.
    const DEFAULT_RESOLUTION: u8 = 6;

    fn of(
        block: &pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock<'_>,
    ) -> Interface {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption as O;
        let mut interface = Interface {
            link: Link::from(block.linktype),
            resolution: Interface::DEFAULT_RESOLUTION,
            offset: 0,
        };
        for option in &block.options {
            match option {
                O::IfTsResol(r) => interface.resolution = *r,
                O::IfTsOffset(o) => interface.offset = *o,
                _ => {}
            }
        }
        interface
    }

    /// A packet's time from its raw timestamp (which pcap-file hands over as nanoseconds).
    fn time(&self, raw: Duration) -> Duration {
        let units = raw.as_nanos();
        let exponent = u32::from(self.resolution & 0x7f);
        let nanos = if self.resolution & 0x80 == 0 {
            // 10^-exponent of a second per unit.
            match exponent.cmp(&9) {
                core::cmp::Ordering::Less => units.saturating_mul(10u128.pow(9 - exponent)),
                core::cmp::Ordering::Equal => units,
                core::cmp::Ordering::Greater => {
                    units / 10u128.checked_pow(exponent - 9).unwrap_or(u128::MAX)
                }
            }
        } else {
            // 2^-exponent of a second per unit.
            units.saturating_mul(1_000_000_000) >> exponent.min(127)
        };
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).saturating_add(Duration::from_secs(self.offset))
    }
}

enum Format {
    Pcap(PcapReader<BufReader<File>>, Link),
    /// With the section's interfaces, by id.
    PcapNg(PcapNgReader<BufReader<File>>, Vec<Interface>),
}

/// A capture being read.
pub struct CaptureFile {
    format: Format,
    /// Packets returned so far.
    number: u64,
    /// The first packet's timestamp.
    start: Option<Duration>,
    /// The last packet's timestamp (for a pcapng simple packet, which has none).
    last: Duration,
    /// Set once the file cannot be read further.
    done: bool,
}

impl core::fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CaptureFile")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl CaptureFile {
    /// Opens `path` and reads its file (or section) header.
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let mut magic = [0u8; 4];
        File::open(path)?.read_exact(&mut magic)?;
        let reader = BufReader::new(File::open(path)?);
        let format = if magic == PCAPNG_MAGIC {
            Format::PcapNg(PcapNgReader::new(reader).map_err(format_error)?, Vec::new())
        } else {
            let pcap = PcapReader::new(reader).map_err(format_error)?;
            let link = Link::from(pcap.header().datalink);
            Format::Pcap(pcap, link)
        };
        Ok(CaptureFile {
            format,
            number: 0,
            start: None,
            last: Duration::ZERO,
            done: false,
        })
    }

    fn packet(
        &mut self,
        time: Duration,
        link: Link,
        data: Vec<u8>,
        wire_len: u32,
    ) -> CapturedPacket {
        self.number += 1;
        self.last = time;
        let start = *self.start.get_or_insert(time);
        CapturedPacket {
            number: self.number,
            time: time.saturating_sub(start),
            link,
            data,
            wire_len,
        }
    }

    /// The next packet of a pcapng file: the next packet block, with its interface's link type
    /// and its time in that interface's resolution.
    fn next_pcapng(&mut self) -> Option<Result<CapturedPacket, CaptureError>> {
        loop {
            let last = self.last;
            let Format::PcapNg(reader, interfaces) = &mut self.format else {
                return None;
            };
            let (time, link, data, wire_len) = match reader.next_block()? {
                Err(e) => return Some(Err(format_error(e))),
                Ok(Block::SectionHeader(_)) => {
                    interfaces.clear(); // interface ids count from 0 again in a new section
                    continue;
                }
                Ok(Block::InterfaceDescription(i)) => {
                    interfaces.push(Interface::of(&i));
                    continue;
                }
                Ok(Block::EnhancedPacket(p)) => {
                    let interface = usize::try_from(p.interface_id)
                        .ok()
                        .and_then(|i| interfaces.get(i));
                    let (time, link) = match interface {
                        Some(i) => (i.time(p.timestamp), i.link),
                        None => (last, Link::Unknown(p.interface_id)),
                    };
                    (time, link, p.data.into_owned(), p.original_len)
                }
                Ok(Block::SimplePacket(p)) => {
                    // No timestamp (the last packet's time stands), the first interface's link
                    // type, and its data padded to 32 bits: cut to the packet's length.
                    let link = interfaces.first().map_or(Link::Unknown(0), |i| i.link);
                    let mut data = p.data.into_owned();
                    data.truncate(usize::try_from(p.original_len).unwrap_or(usize::MAX));
                    (last, link, data, p.original_len)
                }
                Ok(_) => continue, // statistics, name resolution, ...
            };
            return Some(Ok(self.packet(time, link, data, wire_len)));
        }
    }

    /// The next packet of a pcap file. Read raw: pcap-file 2.0 refuses a record whose length
    /// on the wire exceeds the file's snapshot length, which is every record a snapshot
    /// length cut (`tcpdump -s 96`), so the timestamp is converted here and the lengths are
    /// taken as they are (the bytes are `incl_len` long, as the reader read them).
    fn next_pcap(&mut self) -> Option<Result<CapturedPacket, CaptureError>> {
        let Format::Pcap(reader, link) = &mut self.format else {
            return None;
        };
        let link = *link;
        let nanos_per_frac = match reader.header().ts_resolution {
            TsResolution::MicroSecond => 1_000,
            TsResolution::NanoSecond => 1,
        };
        let (time, data, wire_len) = match reader.next_raw_packet()? {
            Ok(p) => {
                let nanos = u64::from(p.ts_frac) * nanos_per_frac;
                let time = Duration::from_secs(u64::from(p.ts_sec)) + Duration::from_nanos(nanos);
                (time, p.data.into_owned(), p.orig_len)
            }
            Err(e) => return Some(Err(format_error(e))),
        };
        Some(Ok(self.packet(time, link, data, wire_len)))
    }
}

impl Iterator for CaptureFile {
    type Item = Result<CapturedPacket, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.format {
            Format::Pcap(..) => self.next_pcap(),
            Format::PcapNg(..) => self.next_pcapng(),
        };
        // After a damaged record the reader's position is lost: nothing more can be read.
        self.done = matches!(next, Some(Err(_)));
        next
    }
}

fn format_error(e: pcap_file::PcapError) -> CaptureError {
    CaptureError::Format(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        let at = |resolution, offset| Interface {
            link: Link::Ethernet,
            resolution,
            offset,
        };
        // 1.5 s in microseconds (the default), nanoseconds, milliseconds and 2^-10 s.
        let raw = |units: u64| Duration::from_nanos(units);
        assert_eq!(at(6, 0).time(raw(1_500_000)), Duration::from_millis(1500));
        assert_eq!(
            at(9, 0).time(raw(1_500_000_000)),
            Duration::from_millis(1500)
        );
        assert_eq!(at(3, 0).time(raw(1500)), Duration::from_millis(1500));
        assert_eq!(
            at(0x80 | 10, 0).time(raw(1536)),
            Duration::from_millis(1500)
        );
        assert_eq!(at(6, 2).time(raw(1_500_000)), Duration::from_millis(3500));
        // Absurd values saturate rather than panic.
        assert_eq!(at(0, 0).time(raw(u64::MAX)), Duration::from_nanos(u64::MAX));
        assert_eq!(at(0x7f, 0).time(raw(u64::MAX)), Duration::ZERO);
        let _ = at(0xff, u64::MAX).time(raw(u64::MAX));
    }
}
