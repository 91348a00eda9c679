//! The pipeline's interface to a control plane (EVPN, through the `evpn` edge and the
//! daemon): what it tells every worker at once (remote VTEPs and flood lists, remote MACs,
//! IP -> MAC bindings for ARP/ND suppression) and what it reads of the local side (the
//! journal of changed local entries, the addresses local VMs use). Methods of [`Vtep`];
//! nothing here runs per frame.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{VniConfig, Vtep, with_age};
use crate::fdb::{EntryView, FdbError, LocalChanges};
use crate::wire::{MacAddr, Vni};

impl Vtep {
    /// Installs a control plane's entry (an EVPN type 2 route): `mac` on `vni` is behind the
    /// remote VTEP `remote`, for every worker, until [`Vtep::remove_evpn`]. It replaces a
    /// learned entry, never a static one; it is never aged, and frames from the underlay never
    /// move it; a frame from a local port does (the MAC moved here: `moved` counts it), unless
    /// it is `sticky` (a static MAC there: such frames are dropped as `static_conflict`).
    pub fn install_evpn(
        &self,
        vni: Vni,
        mac: MacAddr,
        remote: IpAddr,
        sticky: bool,
    ) -> Result<(), FdbError> {
        self.check_remote(remote)?;
        self.shared.fdb.insert_evpn(vni, mac, remote, sticky)
    }

    /// Removes a control plane's entry for `mac` on `vni` if it is still the one behind
    /// `remote` (the withdrawal of a route the MAC has since left removes nothing); whether
    /// there was one.
    pub fn remove_evpn(&self, vni: Vni, mac: MacAddr, remote: IpAddr) -> Result<bool, FdbError> {
        self.shared.fdb.remove_evpn(vni, mac, remote)
    }

    /// Binds `ip` to `mac` on `vni` (an EVPN MAC/IP route, remote or local), for ARP and ND
    /// suppression ([`VniSettings::arp_suppress`](super::VniSettings::arp_suppress)) on every worker; `router`: the address is a
    /// router's (RFC 9161's flag, said in IPv6 answers).
    pub fn set_neighbor(
        &self,
        vni: Vni,
        ip: IpAddr,
        mac: MacAddr,
        router: bool,
    ) -> Result<(), FdbError> {
        if !mac.is_valid_unicast() {
            return Err(FdbError::NotUnicast(mac));
        }
        self.vni_config(vni)?.neighbors.set(ip, mac, router);
        Ok(())
    }

    /// Unbinds `ip` on `vni` if it is bound to `mac`; whether it was.
    pub fn remove_neighbor(&self, vni: Vni, ip: IpAddr, mac: MacAddr) -> Result<bool, FdbError> {
        Ok(self.vni_config(vni)?.neighbors.remove(ip, mac))
    }

    fn vni_config(&self, vni: Vni) -> Result<&VniConfig, FdbError> {
        let idx = self
            .shared
            .by_vni
            .get(&vni)
            .ok_or(FdbError::UnknownVni(vni))?;
        Ok(&self.shared.vnis[idx.index()])
    }

    /// Whether `ip` can be a remote VTEP's address here: the underlay's family, unicast, not ours.
    pub fn check_remote(&self, ip: IpAddr) -> Result<(), FdbError> {
        if ip.is_ipv4() != self.shared.local.is_ipv4() {
            return Err(FdbError::FamilyMismatch(ip));
        }
        if ip.is_multicast() || ip.is_unspecified() || ip == self.shared.local {
            return Err(FdbError::NotARemote(ip));
        }
        Ok(())
    }

    /// Replaces the remote VTEPs a control plane announces on `vni`, for every worker of this
    /// VTEP: `flood` takes the VNI's BUM frames beside the configured group and remotes (EVPN
    /// type 3 routes, RFC 8365 §5.1.3), `announced` are the other VTEPs that announce anything
    /// on it (type 2 next hops), accepted as sources when the VNI checks them
    /// ([`VniSettings::source_check`](super::VniSettings::source_check)). An empty list withdraws all; the configuration's own
    /// remotes always stay. Refuses (changing nothing) a list with an address no remote VTEP
    /// can have.
    pub fn set_control_remotes(
        &self,
        vni: Vni,
        flood: &[IpAddr],
        announced: &[IpAddr],
    ) -> Result<(), FdbError> {
        let idx = self
            .shared
            .by_vni
            .get(&vni)
            .ok_or(FdbError::UnknownVni(vni))?;
        for &ip in flood.iter().chain(announced) {
            self.check_remote(ip)?;
        }
        self.shared.vnis[idx.index()]
            .remotes
            .set_control(flood, announced);
        Ok(())
    }

    /// The entry for `mac` on `vni`, if any, with its age at `now`.
    pub fn fdb_entry(&self, vni: Vni, mac: MacAddr, now: Instant) -> Option<(EntryView, Duration)> {
        let tick = self.tick(now);
        self.shared
            .fdb
            .entry(vni, mac, tick)
            .map(|e| with_age(e, tick))
    }

    /// Starts (or stops) noting which local entries change, for a control plane that announces
    /// them (EVPN type 2 routes): see [`Vtep::take_local_changes`].
    pub fn journal_local_changes(&self, on: bool) {
        self.shared.fdb.journal_local_changes(on);
        for v in &self.shared.vnis {
            v.local_ips.set_on(on);
        }
    }

    /// The addresses local VMs on `vni` use whose binding to a MAC changed since the last
    /// call (seen in their ARP and neighbour discovery while the journal is on: see
    /// [`Vtep::journal_local_changes`]), with the MAC now, appended to `into`.
    /// [`LocalChanges::Overflowed`]: more changed than the journal holds; `into` then has every
    /// binding known.
    pub fn take_local_ips(
        &self,
        vni: Vni,
        into: &mut Vec<(IpAddr, MacAddr)>,
    ) -> Result<LocalChanges, FdbError> {
        let ips = &self.vni_config(vni)?.local_ips;
        let changes = ips.take_changes(into);
        if changes == LocalChanges::Overflowed {
            ips.all(into);
        }
        Ok(changes)
    }

    /// Forgets the local addresses `ips` where they are bound to `mac` on `vni` (its entry is no
    /// longer local: the control plane withdraws its MAC/IP routes), so that they are noted
    /// again when the VM speaks.
    pub fn forget_local_ips(&self, vni: Vni, mac: MacAddr, ips: &[IpAddr]) -> Result<(), FdbError> {
        self.vni_config(vni)?.local_ips.forget(mac, ips);
        Ok(())
    }

    /// The (VNI, MAC) keys whose local entry changed (learned on a port, moved here or away,
    /// expired, removed, made static) since the last call, appended to `into`, each once; read
    /// each with [`Vtep::fdb_entry`]. [`LocalChanges::Overflowed`]: more changed than the
    /// journal holds, read every entry anew.
    pub fn take_local_changes(&self, into: &mut Vec<(Vni, MacAddr)>) -> LocalChanges {
        self.shared.fdb.take_local_changes(into)
    }
}
