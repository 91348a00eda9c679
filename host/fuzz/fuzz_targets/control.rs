//! Arbitrary bytes as what a client writes to the control socket, taken as the server takes
//! them: line by line (`\n`-terminated, the last line may lack it), a line longer than
//! `MAX_REQUEST` answered with an error and the connection closed, every other line parsed as
//! a JSON `Request` (an error reply if it is not one) and handed to the handler, and the
//! reply serialised. The handler runs against a small pipeline built afresh for each input
//! (VNI 5001 on ports vm1 and vm2 with a remote, a group and a static entry; VNI 5002 on port
//! vm3 with room for 4 learned entries; VNI 1 without ports; a port name, `spare`, on no VNI)
//! with a few learned entries and an empty plugin chain, so that `fdb add`, `fdb del` and
//! `fdb show` see arbitrary MACs, VNIs, ports and addresses. A `plugin reload` goes to the
//! handler too: the daemon would load a file from the request's path, which this target does
//! not do.
//!
//! Checked besides "no panic": an `fdb add` that succeeded left a static entry, an `fdb del`
//! that succeeded left none; every reply serialises, and the CLI can read (and print) the
//! replies of `fdb show`, `stats` and `plugin list`. After the requests, a frame to every
//! entry's MAC is sent from a port and from the underlay of the entry's VNI: nothing may be
//! delivered to a port of another VNI, whatever the control socket added.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wasm_vtep::control::protocol::MAX_REQUEST;
use wasm_vtep::control::{FdbRow, PluginReport, Request, Response, StatsReport, render};
use wasm_vtep::daemon::answer::{self, Counters};
use wasm_vtep::fdb::{Location, PortId};
use wasm_vtep::plugin::PluginChain;
use wasm_vtep::vtep::{Dest, Outbox, StaticEntry, VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{MacAddr, VirtioNetHdr, Vni};
use wasm_vtep_testkit::vxlan::encapsulate as vxlan;

/// Requests handled per input at most (a connection may send any number; this bounds a run).
const MAX_LINES: usize = 32;

const PORTS: [&str; 4] = ["vm1", "vm2", "vm3", "spare"];
const LOCAL: [u8; 4] = [198, 18, 0, 1];
const REMOTE: [u8; 4] = [198, 18, 0, 2];

/// The ports of each VNI, as configured below.
const VNI_PORTS: [(u32, &[u16]); 3] = [(5001, &[0, 1]), (5002, &[2]), (1, &[])];

fn vni(id: u32) -> Vni {
    Vni::new(id).expect("a valid VNI")
}

fn vtep(now: Instant) -> Vtep {
    let mut s = VtepSettings::new(IpAddr::from(LOCAL));
    let mut a = VniSettings::new(vni(5001), vec![PortId(0), PortId(1)]);
    a.group = Some(IpAddr::from([239, 1, 1, 100]));
    a.remotes = vec![IpAddr::from(REMOTE)];
    a.max_entries = 16;
    a.statics.push(StaticEntry {
        mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        location: Location::Remote(IpAddr::from(REMOTE)),
    });
    let mut b = VniSettings::new(vni(5002), vec![PortId(2)]);
    b.max_entries = 4;
    let c = VniSettings::new(vni(1), Vec::new());
    s.vnis = vec![a, b, c];
    Vtep::new(s, now).expect("valid fuzz settings")
}

/// A 60-byte frame from `src` to `dst`.
fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Whether every frame in `out` for a port goes to a port of `vni`.
fn check_ports(out: &Outbox, vni: u32, what: &str) {
    let ports = VNI_PORTS
        .iter()
        .find(|(v, _)| *v == vni)
        .map_or(&[][..], |(_, p)| *p);
    for f in out.frames() {
        if let Dest::Port(p) = f.dest {
            assert!(
                ports.contains(&p.0),
                "{what} on VNI {vni} was delivered to port {} of another VNI",
                p.0
            );
        }
    }
}

/// The lines of `data` as the server reads them, and whether the connection ends on a line
/// longer than `MAX_REQUEST` (which is answered, then the connection closed).
fn next_line(data: &[u8]) -> (&[u8], &[u8]) {
    let limit = data.len().min(MAX_REQUEST + 1);
    let end = data[..limit]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(limit, |i| i + 1);
    data.split_at(end)
}

fn handle(vtep: &Vtep, plugins: &PluginChain, request: Request, now: Instant) -> Response {
    let counters = Counters {
        vnis: vtep.vni_stats().cloned().collect(),
        drops: *vtep.drops(),
    };
    let ports: Vec<String> = PORTS.iter().map(|&p| p.to_owned()).collect();
    let io = [("underlay_send_errors".to_owned(), 1u64)];
    // As the daemon does: the plugins only for the requests that concern them.
    let plugins = answer::needs_plugins(&request).then_some(plugins);
    answer::handle(request, vtep, &counters, plugins, &ports, &io, now)
}

/// What the CLI does with the reply's data: reads it as the request's type and prints it.
fn print_reply(request: &Request, data: serde_json::Value) {
    match request {
        Request::FdbShow { .. } => {
            let rows: Vec<FdbRow> = serde_json::from_value(data).expect("fdb show reply");
            let _ = render::fdb(&rows);
        }
        Request::Stats => {
            let report: StatsReport = serde_json::from_value(data).expect("stats reply");
            let _ = render::stats(&report);
        }
        Request::PluginList => {
            let reports: Vec<PluginReport> =
                serde_json::from_value(data).expect("plugin list reply");
            let _ = render::plugin_list(&reports);
        }
        _ => {}
    }
}

/// Whether the table has an entry for `mac` (as the request spelled it) on `vni`, and whether
/// it is static.
fn entry(vtep: &Vtep, vni: u32, mac: &str, now: Instant) -> Option<bool> {
    let mac: MacAddr = mac.parse().ok()?;
    vtep.fdb_entries(now)
        .find(|(e, _)| e.vni.get() == vni && e.mac == mac)
        .map(|(e, _)| e.is_static)
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut vtep = vtep(now);
    let plugins = PluginChain::new();
    let mut out = Outbox::new();
    // A few learned entries: from a port of each VNI with ports, and from the remote.
    let none = VirtioNetHdr::NONE;
    let bcast = MacAddr([0xff; 6]);
    let _ = vtep.handle_port_frame(
        now,
        PortId(0),
        &none,
        &frame(bcast, MacAddr([2, 0, 0, 0, 0, 1])),
        &mut out,
    );
    let _ = vtep.handle_port_frame(
        now,
        PortId(2),
        &none,
        &frame(bcast, MacAddr([2, 0, 0, 0, 0, 3])),
        &mut out,
    );
    let d = vxlan(5001, &frame(bcast, MacAddr([2, 0, 0, 0, 0, 2])));
    let _ = vtep.handle_underlay(now, IpAddr::from(REMOTE), &d, &mut out);
    out.clear();

    let mut rest = data;
    for _ in 0..MAX_LINES {
        if rest.is_empty() {
            break;
        }
        let (line, tail) = next_line(rest);
        rest = tail;
        if line.len() > MAX_REQUEST {
            let reply = Response::Error(format!("request longer than {MAX_REQUEST} bytes"));
            serde_json::to_vec(&reply).expect("the reply serialises");
            break; // the server closes the connection
        }
        let request = match serde_json::from_slice::<Request>(line) {
            Ok(request) => request,
            Err(e) => {
                let reply = Response::Error(format!("bad request: {e}"));
                serde_json::to_vec(&reply).expect("the reply serialises");
                continue;
            }
        };
        let response = handle(&vtep, &plugins, request.clone(), now);
        serde_json::to_vec(&response).expect("the reply serialises");
        match (&request, response) {
            (Request::FdbAdd { vni, mac, .. }, Response::Ok(_)) => {
                assert_eq!(
                    entry(&vtep, *vni, mac, now),
                    Some(true),
                    "fdb add succeeded but left no static entry: {request:?}"
                );
            }
            (Request::FdbDel { vni, mac }, Response::Ok(_)) => {
                assert_eq!(
                    entry(&vtep, *vni, mac, now),
                    None,
                    "fdb del succeeded but left the entry: {request:?}"
                );
            }
            (_, Response::Ok(data)) => print_reply(&request, data),
            (_, Response::Error(_)) => {}
        }
    }

    // Traffic to every entry, from each side of its VNI.
    let entries: Vec<(u32, MacAddr)> = vtep
        .fdb_entries(now)
        .map(|(e, _)| (e.vni.get(), e.mac))
        .take(32)
        .collect();
    let t = now + Duration::from_secs(1);
    for (vni, mac) in entries {
        let src = MacAddr([2, 0, 0, 0, 1, 1]);
        let f = frame(mac, src);
        if let Some(&(_, ports)) = VNI_PORTS.iter().find(|(v, _)| *v == vni)
            && let Some(&p) = ports.first()
        {
            let _ = vtep.handle_port_frame(t, PortId(p), &none, &f, &mut out);
            check_ports(&out, vni, "a frame from a port");
            out.clear();
        }
        let d = vxlan(vni, &f);
        let _ = vtep.handle_underlay(t, IpAddr::from(REMOTE), &d, &mut out);
        check_ports(&out, vni, "a frame from the underlay");
        out.clear();
    }
    vtep.handle_timeout(now + Duration::from_secs(3600));
});
