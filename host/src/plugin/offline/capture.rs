//! [`CaptureFile`]: the packets of a capture file (pcap or pcapng, as tcpdump and Wireshark
//! write them), one at a time, for `vtep plugin test`.
//!
//! Contract: the format is told by the file's magic number. Every packet comes out numbered
//! from 1 in file order, with its time since the capture's first packet, its bytes as
//! captured and its length on the wire (more than its bytes when the capture cut it: a
//! snapshot length). A packet of a link type other than Ethernet is returned as such, to be
//! counted; only a file that cannot be read further ends the iteration early, with the error.
//! Reading is pcap-file's (a well-kept crate that reads both formats, their byte orders and
//! timestamp resolutions).

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
}

impl From<DataLink> for Link {
    fn from(d: DataLink) -> Link {
        match d {
            DataLink::ETHERNET => Link::Ethernet,
            other => Link::Other(u32::from(other)),
        }
    }
}

enum Format {
    Pcap(PcapReader<BufReader<File>>, Link),
    /// With the link types of the section's interfaces, by id.
    PcapNg(PcapNgReader<BufReader<File>>, Vec<Link>),
}

/// A capture being read.
pub struct CaptureFile {
    format: Format,
    /// Packets returned so far.
    number: u64,
    /// The first packet's timestamp.
    start: Option<Duration>,
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
        let start = *self.start.get_or_insert(time);
        CapturedPacket {
            number: self.number,
            time: time.saturating_sub(start),
            link,
            data,
            wire_len,
        }
    }

    /// The next packet of a pcapng file: the next packet block, with its interface's link type.
    fn next_pcapng(&mut self) -> Option<Result<CapturedPacket, CaptureError>> {
        loop {
            let Format::PcapNg(reader, interfaces) = &mut self.format else {
                return None;
            };
            let link_of = |interfaces: &[Link], id: u32| {
                usize::try_from(id)
                    .ok()
                    .and_then(|i| interfaces.get(i).copied())
                    .unwrap_or(Link::Other(u32::MAX))
            };
            let (time, link, data, wire_len) = match reader.next_block()? {
                Err(e) => return Some(Err(format_error(e))),
                Ok(Block::SectionHeader(_)) => {
                    interfaces.clear(); // interface ids count from 0 again in a new section
                    continue;
                }
                Ok(Block::InterfaceDescription(i)) => {
                    interfaces.push(Link::from(i.linktype));
                    continue;
                }
                Ok(Block::EnhancedPacket(p)) => (
                    p.timestamp,
                    link_of(interfaces, p.interface_id),
                    p.data.into_owned(),
                    p.original_len,
                ),
                // No timestamp, and the first interface's link type.
                Ok(Block::SimplePacket(p)) => (
                    self.start.unwrap_or_default(),
                    link_of(interfaces, 0),
                    p.data.into_owned(),
                    p.original_len,
                ),
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
