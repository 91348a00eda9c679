//! MAC mobility (RFC 7432 §15): which VTEP a MAC is behind when several announce it, and what
//! this VTEP announces for its own MACs. A pure state machine per (VNI, MAC), fed with local
//! events (the MAC learned on a local port, or gone) and remote routes (announced, withdrawn),
//! answering with the [`Action`]s to carry out, in order.
//!
//! The rules:
//! - A MAC first learned here is announced with sequence number 0 (no mobility community);
//!   learned here while a remote route has it, with that route's number plus one.
//! - A remote route wins over the local one when its number is higher, or equal and its VTEP's
//!   address lower than ours (§15.1's tie-break); the local MAC is then withdrawn after the
//!   remote entry is installed (forwarding follows the MAC at once).
//! - Sticky routes (static MACs, §15.2) come first: a sticky local MAC never moves away, a
//!   sticky remote route displaces a non-sticky local MAC whatever its number, and a MAC that a
//!   sticky remote route holds is not taken over by local learning (the data plane drops its
//!   frames as it does for a static entry's).
//! - Among remote routes, the best is sticky first, then the highest number, then the lowest
//!   VTEP address; withdrawing it falls back to the next best, or removes the entry.

use std::net::IpAddr;

use super::small_map::SmallMap;

/// What a route or this VTEP says of a MAC's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq {
    /// The MAC mobility sequence number (0 without the community).
    pub seq: u32,
    /// A static MAC: it does not move.
    pub sticky: bool,
}

/// What to do after an event, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Announce the local MAC with this number and stickiness (replacing an earlier
    /// announcement of it).
    Advertise(Seq),
    /// Withdraw the local announcement.
    Withdraw,
    /// Point the forwarding entry at this remote VTEP (again, when its route's stickiness
    /// changed).
    Install(IpAddr),
    /// Remove the forwarding entry that points at this remote VTEP.
    Remove(IpAddr),
}

/// One MAC's state on one VNI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacState {
    /// What this VTEP announces, while the MAC is local.
    local: Option<Seq>,
    /// Every remote VTEP's route for the MAC.
    remotes: SmallMap<IpAddr, Seq>,
    /// The remote VTEP the forwarding entry points at, if any, and whether it was installed
    /// sticky.
    installed: Option<(IpAddr, bool)>,
}

impl MacState {
    /// Nothing known: the state can be dropped.
    pub fn is_empty(&self) -> bool {
        self.local.is_none() && self.remotes.is_empty() && self.installed.is_none()
    }

    /// What this VTEP announces now.
    pub fn local(&self) -> Option<Seq> {
        self.local
    }

    /// The best remote route: sticky first, then the highest number, then the lowest VTEP
    /// address.
    fn best_remote(&self) -> Option<(IpAddr, Seq)> {
        self.remotes
            .iter()
            .map(|(&ip, &s)| (ip, s))
            .max_by(|(a_ip, a), (b_ip, b)| {
                (a.sticky, a.seq)
                    .cmp(&(b.sticky, b.seq))
                    .then_with(|| b_ip.cmp(a_ip))
            })
    }

    /// Whether remote route `r` from `vtep` displaces the local announcement `l` of this
    /// VTEP (at `us`).
    fn displaces(r: Seq, vtep: IpAddr, l: Seq, us: IpAddr) -> bool {
        if l.sticky {
            // Static here: a route elsewhere, sticky or not, is a misconfiguration or a spoof.
            return false;
        }
        if r.sticky {
            return true;
        }
        r.seq > l.seq || (r.seq == l.seq && vtep < us)
    }

    /// The MAC was learned (or made static: `sticky`) on a local port. A MAC a sticky remote
    /// route holds is not taken over unless it is made static here.
    pub fn learned_locally(&mut self, sticky: bool, out: &mut Vec<Action>) {
        if !sticky && self.best_remote().is_some_and(|(_, r)| r.sticky) {
            return;
        }
        let seq = match (self.local, self.best_remote()) {
            // Already ours: announce again only if stickiness changed.
            (Some(l), _) if l.sticky == sticky => return,
            (Some(l), _) => l.seq,
            (None, Some((_, r))) => r.seq.saturating_add(1),
            (None, None) => 0,
        };
        let s = Seq { seq, sticky };
        self.local = Some(s);
        out.push(Action::Advertise(s));
        // The data plane already points the MAC at the local port.
        self.installed = None;
    }

    /// The MAC is no longer local (aged out, removed, its port gone, or moved to a remote VTEP
    /// by the data plane).
    pub fn gone_locally(&mut self, out: &mut Vec<Action>) {
        if self.local.take().is_none() {
            return;
        }
        out.push(Action::Withdraw);
        self.install_best(out);
    }

    /// `vtep` announces the MAC (or announces it again, e.g. with a new number). `us` is this
    /// VTEP's address.
    pub fn announced(&mut self, vtep: IpAddr, route: Seq, us: IpAddr, out: &mut Vec<Action>) {
        self.remotes.insert(vtep, route);
        if let Some(l) = self.local {
            let Some((best, r)) = self.best_remote() else {
                return;
            };
            if Self::displaces(r, best, l, us) {
                // The MAC moved away: forward to it first, then stop announcing.
                self.local = None;
                self.installed = Some((best, r.sticky));
                out.push(Action::Install(best));
                out.push(Action::Withdraw);
            }
            return;
        }
        self.install_best(out);
    }

    /// `vtep` withdrew its route for the MAC.
    pub fn withdrawn(&mut self, vtep: IpAddr, out: &mut Vec<Action>) {
        if self.remotes.remove(&vtep).is_none() {
            return;
        }
        if self.local.is_none() {
            self.install_best(out);
        }
    }

    /// Points the entry at the best remote route (again if its stickiness changed), or
    /// removes it if there is none.
    fn install_best(&mut self, out: &mut Vec<Action>) {
        let best = self.best_remote().map(|(ip, s)| (ip, s.sticky));
        if best == self.installed {
            return;
        }
        match best {
            Some((ip, _)) => out.push(Action::Install(ip)),
            None => {
                if let Some((old, _)) = self.installed {
                    out.push(Action::Remove(old));
                }
            }
        }
        self.installed = best;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const US: &str = "198.18.0.1";

    fn seq(seq: u32) -> Seq {
        Seq { seq, sticky: false }
    }

    fn run(f: impl FnOnce(&mut Vec<Action>)) -> Vec<Action> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn a_new_local_mac_is_announced_with_zero_and_withdrawn_when_gone() {
        let mut m = MacState::default();
        assert_eq!(
            run(|o| m.learned_locally(false, o)),
            [Action::Advertise(seq(0))]
        );
        assert_eq!(
            run(|o| m.learned_locally(false, o)),
            [],
            "a refresh announces nothing"
        );
        assert_eq!(
            run(|o| m.learned_locally(true, o)),
            [Action::Advertise(Seq {
                seq: 0,
                sticky: true
            })],
            "made static: announced sticky"
        );
        assert_eq!(run(|o| m.gone_locally(o)), [Action::Withdraw]);
        assert!(m.is_empty());
    }

    #[test]
    fn a_mac_that_moves_here_is_announced_with_the_next_number() {
        let mut m = MacState::default();
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.2"), seq(4), ip(US), o)),
            [Action::Install(ip("198.18.0.2"))]
        );
        assert_eq!(
            run(|o| m.learned_locally(false, o)),
            [Action::Advertise(seq(5))]
        );
        // The old VTEP's withdrawal changes nothing here.
        assert_eq!(run(|o| m.withdrawn(ip("198.18.0.2"), o)), []);
        assert_eq!(m.local(), Some(seq(5)));
    }

    #[test]
    fn a_higher_number_elsewhere_moves_a_local_mac_away_install_first() {
        let mut m = MacState::default();
        run(|o| m.learned_locally(false, o));
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.3"), seq(1), ip(US), o)),
            [Action::Install(ip("198.18.0.3")), Action::Withdraw]
        );
        assert_eq!(m.local(), None);
        // An older route elsewhere changes nothing; the best stays installed.
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.4"), seq(0), ip(US), o)),
            []
        );
        // Its withdrawal falls back to the next best, then to nothing.
        assert_eq!(
            run(|o| m.withdrawn(ip("198.18.0.3"), o)),
            [Action::Install(ip("198.18.0.4"))]
        );
        assert_eq!(
            run(|o| m.withdrawn(ip("198.18.0.4"), o)),
            [Action::Remove(ip("198.18.0.4"))]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn equal_numbers_go_to_the_lower_address() {
        let mut m = MacState::default();
        run(|o| m.learned_locally(false, o));
        // 198.18.0.9 > us: we keep it.
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.9"), seq(0), ip(US), o)),
            []
        );
        assert_eq!(m.local(), Some(seq(0)));
        // 198.18.0.0 < us: it wins.
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.0"), seq(0), ip(US), o)),
            [Action::Install(ip("198.18.0.0")), Action::Withdraw]
        );
        // Among remotes with equal numbers, the lower address is installed.
        let mut m = MacState::default();
        run(|o| m.announced(ip("198.18.0.7"), seq(2), ip(US), o));
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.5"), seq(2), ip(US), o)),
            [Action::Install(ip("198.18.0.5"))]
        );
    }

    #[test]
    fn a_change_of_stickiness_installs_the_entry_again() {
        let mut m = MacState::default();
        let vtep = ip("198.18.0.2");
        assert_eq!(
            run(|o| m.announced(vtep, seq(1), ip(US), o)),
            [Action::Install(vtep)]
        );
        let sticky = Seq {
            seq: 1,
            sticky: true,
        };
        assert_eq!(
            run(|o| m.announced(vtep, sticky, ip(US), o)),
            [Action::Install(vtep)]
        );
        assert_eq!(run(|o| m.announced(vtep, sticky, ip(US), o)), []);
        assert_eq!(
            run(|o| m.announced(vtep, seq(1), ip(US), o)),
            [Action::Install(vtep)]
        );
    }

    #[test]
    fn sticky_macs_do_not_move() {
        let sticky = |seq| Seq { seq, sticky: true };
        // A static MAC here stays, whatever number a non-sticky route carries.
        let mut m = MacState::default();
        run(|o| m.learned_locally(true, o));
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.2"), seq(9), ip(US), o)),
            []
        );
        assert_eq!(m.local(), Some(sticky(0)));
        // ... or a sticky one (two static announcements: a misconfiguration, not a move).
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.3"), sticky(5), ip(US), o)),
            []
        );
        assert_eq!(m.local(), Some(sticky(0)));
        // A sticky route elsewhere displaces a non-sticky local MAC, whatever the numbers.
        let mut m = MacState::default();
        run(|o| m.learned_locally(false, o));
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.7"), sticky(0), ip(US), o)),
            [Action::Install(ip("198.18.0.7")), Action::Withdraw]
        );
        // A MAC a sticky route holds is not taken over by local learning; made static here, it
        // is (and announced past the route's number).
        let mut m = MacState::default();
        run(|o| m.announced(ip("198.18.0.2"), sticky(2), ip(US), o));
        assert_eq!(run(|o| m.learned_locally(false, o)), []);
        assert_eq!(
            run(|o| m.learned_locally(true, o)),
            [Action::Advertise(sticky(3))]
        );
        // Best remote: sticky first, whatever the numbers.
        let mut m = MacState::default();
        run(|o| m.announced(ip("198.18.0.2"), seq(7), ip(US), o));
        assert_eq!(
            run(|o| m.announced(ip("198.18.0.3"), sticky(0), ip(US), o)),
            [Action::Install(ip("198.18.0.3"))]
        );
    }
}
