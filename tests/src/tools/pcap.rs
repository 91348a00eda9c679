//! Reading classic pcap files (what `tcpdump -w` writes): a 24-byte file header, then per packet
//! a 16-byte record header and the captured bytes. Either byte order, microsecond or nanosecond
//! timestamps. Never panics: a file cut short mid-record (tcpdump killed) ends the list there.

use std::time::Duration;

use anyhow::{Result, bail};

/// pcap's link type for Ethernet frames (`LINKTYPE_ETHERNET`), what tcpdump writes for a bridge
/// or veth. `-i any` writes Linux cooked headers instead.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Capture time, since the Unix epoch.
    pub timestamp: Duration,
    /// The packet's length on the wire (`data` is shorter if the snapshot length cut it).
    pub orig_len: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
}

/// Parses a pcap file: its link type and its packets.
pub fn parse_pcap(bytes: &[u8]) -> Result<(u32, Vec<CapturedPacket>)> {
    let Some(header) = bytes.get(..24) else {
        bail!("pcap file too short for its header ({} bytes)", bytes.len());
    };
    let magic = [header[0], header[1], header[2], header[3]];
    let (big_endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => bail!("not a pcap file (magic {magic:02x?})"),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let mut word = [0u8; 4];
        if let Some(src) = b.get(at..at + 4) {
            word.copy_from_slice(src);
        }
        if big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        }
    };
    // The low 16 bits are the link type; the upper bits may carry FCS information.
    let linktype = u32_at(header, 20) & 0xffff;

    let mut packets = Vec::new();
    let mut rest = &bytes[24..];
    while let Some(record) = rest.get(..16) {
        let (secs, frac) = (u32_at(record, 0), u32_at(record, 4));
        let orig_len = u32_at(record, 12);
        let Ok(incl_len) = usize::try_from(u32_at(record, 8)) else {
            break;
        };
        let Some(end) = incl_len.checked_add(16) else {
            break;
        };
        let Some(data) = rest.get(16..end) else { break };
        let frac = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        packets.push(CapturedPacket {
            timestamp: Duration::from_secs(u64::from(secs)) + Duration::from_nanos(u64::from(frac)),
            orig_len,
            data: data.to_vec(),
        });
        rest = &rest[end..];
    }
    Ok((linktype, packets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0; 8]);
        f.extend(262_144u32.to_le_bytes());
        f.extend(LINKTYPE_ETHERNET.to_le_bytes());
        for (i, (data, orig)) in records.iter().enumerate() {
            f.extend((1_700_000_000 + u32::try_from(i).unwrap()).to_le_bytes());
            f.extend(250_000u32.to_le_bytes());
            f.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
            f.extend(orig.to_le_bytes());
            f.extend(*data);
        }
        f
    }

    #[test]
    fn reads_records() {
        let bytes = file(&[(&[1, 2, 3], 3), (&[4; 60], 1514)]);
        let (lt, p) = parse_pcap(&bytes).unwrap();
        assert_eq!(lt, LINKTYPE_ETHERNET);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].data, [1, 2, 3]);
        assert_eq!(p[0].timestamp, Duration::new(1_700_000_000, 250_000_000));
        assert_eq!((p[1].data.len(), p[1].orig_len), (60, 1514));
    }

    #[test]
    fn truncated_files_end_cleanly() {
        let bytes = file(&[(&[1, 2, 3], 3), (&[4; 60], 60)]);
        for cut in 0..bytes.len() {
            match parse_pcap(&bytes[..cut]) {
                Ok((_, p)) => assert!(cut >= 24 && p.len() <= 2),
                Err(_) => assert!(cut < 24),
            }
        }
        assert!(parse_pcap(&[0u8; 24]).is_err());
    }
}
