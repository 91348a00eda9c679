//! Binding the wanted source ports: a port another program holds is swapped for a free one of
//! the same range, so that the pipeline only picks ports this sender really has.

use std::io;
use std::sync::atomic::AtomicBool;

use super::{PortSockets, UnderlayTx, UnderlayTxConfig};
use crate::io::sys::{SetupError, if_index};
use crate::vtep::SourcePorts;

impl UnderlayTx {
    /// Opens the sockets of every port of `ports`. A port that another program holds is
    /// replaced in `ports` by a free one of the same range, so that `ports` ends up naming the
    /// ports the pipeline may pick. Needs `CAP_NET_ADMIN` for the larger send buffers (else
    /// they stay at the system's maximum).
    pub fn open(
        config: &UnderlayTxConfig<'_>,
        ports: &mut SourcePorts,
    ) -> Result<UnderlayTx, SetupError> {
        let multicast_if = config.multicast_if.map(if_index).transpose()?;
        let mut sockets: Vec<PortSockets> = Vec::with_capacity(ports.ports().len());
        let wanted: Vec<u16> = ports.ports().to_vec();
        let range = ports.range();
        // Each port in use is tried once: a search that went round the range gives up.
        let mut tries_left = usize::from(*range.end() - *range.start()) + 1;
        for port in wanted {
            let mut candidate = port;
            let opened = loop {
                match PortSockets::open(config, candidate, multicast_if) {
                    Ok(s) => break s,
                    Err(e) if is_in_use(&e) && tries_left > 0 => {
                        tries_left -= 1;
                        let next = free_port(ports, candidate, config.dst_port).ok_or(e)?;
                        if !ports.replace(candidate, next) {
                            return Err(SetupError::socket(
                                "finding a free source port",
                                format!("range {:?}", ports.range()),
                                io::Error::from_raw_os_error(libc::EADDRINUSE),
                            ));
                        }
                        tracing::info!(port = candidate, instead = next, "source port in use");
                        candidate = next;
                    }
                    Err(e) => return Err(e),
                }
            };
            sockets.push(opened);
        }
        sockets.sort_unstable_by_key(|s| s.port);
        Ok(UnderlayTx {
            local: config.local,
            ipv6: config.local.is_ipv6(),
            dst_port: config.dst_port,
            sockets,
            gso: AtomicBool::new(true),
            tunnel: None,
        })
    }
}

fn is_in_use(e: &SetupError) -> bool {
    matches!(e, SetupError::Socket { source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE))
}

/// A port of `ports`' range after `from` (wrapping) that is neither in the set nor `dst_port`,
/// if any.
fn free_port(ports: &SourcePorts, from: u16, dst_port: u16) -> Option<u16> {
    let range = ports.range();
    let (lo, hi) = (*range.start(), *range.end());
    let span = u32::from(hi - lo) + 1;
    (1..span)
        .map(|step| {
            let offset = (u32::from(from - lo) + step) % span;
            lo + u16::try_from(offset).unwrap_or(0)
        })
        .find(|&p| !ports.contains(p) && p != dst_port)
}
