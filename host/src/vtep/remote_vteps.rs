//! [`RemoteVteps`]: one VNI's remote VTEPs, as the configuration names them and as a control
//! plane (EVPN type 3 and type 2 routes) announces them, for the data path to read without a
//! lock: where BUM frames go, and which underlay sources it accepts when the VNI checks them.
//!
//! Contract: the configured part is fixed for the pipeline's life; the control plane replaces
//! its own part whole ([`Vtep::set_control_remotes`](super::Vtep::set_control_remotes)), and
//! every worker sees the new lists from its next frame on. Readers load a pointer (no lock, no
//! allocation); a replacement allocates, on the control plane's thread.

use std::net::IpAddr;

use arc_swap::ArcSwap;

/// The lists the data path reads, rebuilt on each control-plane change.
#[derive(Debug, Default)]
struct Lists {
    /// Where BUM frames go: the configured targets first, then the announced ones not among
    /// them, each once.
    flood: Vec<IpAddr>,
    /// Sorted, each once: the configured remotes and every VTEP the control plane announces.
    known: Vec<IpAddr>,
}

/// One VNI's remote VTEPs.
#[derive(Debug)]
pub(super) struct RemoteVteps {
    /// The configured flood targets: the group (while the VNI has ports), then the remotes.
    configured_flood: Vec<IpAddr>,
    /// The configured remotes and the VTEPs of static entries (a group is no VTEP): accepted
    /// as sources whatever a control plane says.
    configured: Vec<IpAddr>,
    lists: ArcSwap<Lists>,
}

impl RemoteVteps {
    /// `remotes` take BUM frames; `statics` are the VTEPs static entries point at (accepted
    /// as sources, flooded to only if they are remotes too).
    pub(super) fn new(
        group: Option<IpAddr>,
        remotes: &[IpAddr],
        statics: &[IpAddr],
    ) -> RemoteVteps {
        let configured_flood: Vec<IpAddr> =
            group.into_iter().chain(remotes.iter().copied()).collect();
        let vteps = RemoteVteps {
            configured: remotes.iter().chain(statics).copied().collect(),
            lists: ArcSwap::from_pointee(Lists::default()),
            configured_flood,
        };
        vteps.set_control(&[], &[]);
        vteps
    }

    /// Replaces what the control plane announces: the VTEPs that take this VNI's BUM traffic
    /// (`flood`: type 3 routes) and every VTEP that announces anything on it (`announced`: type 3
    /// and type 2 routes; the flood targets count as announced too).
    pub(super) fn set_control(&self, flood: &[IpAddr], announced: &[IpAddr]) {
        let mut all_flood = self.configured_flood.clone();
        for &ip in flood {
            if !all_flood.contains(&ip) {
                all_flood.push(ip);
            }
        }
        let mut known: Vec<IpAddr> = self
            .configured
            .iter()
            .chain(flood)
            .chain(announced)
            .copied()
            .collect();
        known.sort_unstable();
        known.dedup();
        self.lists.store(std::sync::Arc::new(Lists {
            flood: all_flood,
            known,
        }));
    }

    /// Calls `f` with where BUM frames go now.
    pub(super) fn with_flood<R>(&self, f: impl FnOnce(&[IpAddr]) -> R) -> R {
        f(&self.lists.load().flood)
    }

    /// Whether `source` is a configured or announced VTEP of this VNI.
    pub(super) fn knows(&self, source: IpAddr) -> bool {
        self.lists.load().known.binary_search(&source).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flood_is_configured_then_announced_each_once() {
        let v = RemoteVteps::new(
            Some(ip("239.1.1.1")),
            &[ip("198.18.0.2")],
            &[ip("198.18.0.5")],
        );
        let flood = |v: &RemoteVteps| v.with_flood(<[IpAddr]>::to_vec);
        assert_eq!(flood(&v), [ip("239.1.1.1"), ip("198.18.0.2")]);
        v.set_control(&[ip("198.18.0.3"), ip("198.18.0.2"), ip("198.18.0.3")], &[]);
        assert_eq!(
            flood(&v),
            [ip("239.1.1.1"), ip("198.18.0.2"), ip("198.18.0.3")]
        );
        // Withdrawn: back to the configuration; configured remotes are never withdrawn.
        v.set_control(&[], &[]);
        assert_eq!(flood(&v), [ip("239.1.1.1"), ip("198.18.0.2")]);
    }

    #[test]
    fn known_sources_are_configured_remotes_static_entries_and_announced_vteps() {
        let v = RemoteVteps::new(
            Some(ip("239.1.1.1")),
            &[ip("198.18.0.2")],
            &[ip("198.18.0.5")],
        );
        assert!(v.knows(ip("198.18.0.2")));
        assert!(v.knows(ip("198.18.0.5")), "a static entry's VTEP");
        assert!(!v.knows(ip("239.1.1.1")), "a group is no VTEP");
        assert!(!v.knows(ip("198.18.0.3")));
        v.set_control(&[ip("198.18.0.3")], &[ip("198.18.0.4")]);
        assert!(v.knows(ip("198.18.0.3")) && v.knows(ip("198.18.0.4")));
        v.set_control(&[], &[]);
        assert!(!v.knows(ip("198.18.0.3")) && !v.knows(ip("198.18.0.4")));
        assert!(v.knows(ip("198.18.0.2")) && v.knows(ip("198.18.0.5")));
    }
}
