//! Per-frame costs of the pipeline: encapsulation of a known-unicast frame, decapsulation with
//! a learning refresh, and FDB lookup and learning with one million entries.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasm_vtep::fdb::{Builtin, Fdb, Location, PortId, VniTableSettings};
use wasm_vtep::vtep::{Outbox, VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{MacAddr, VirtioNetHdr, Vni};

const VM1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VM2: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A 1400-byte UDP/IPv4 frame from VM1 to VM2 (contents do not matter to the pipeline beyond
/// the headers it hashes).
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&VM2);
    f[6..12].copy_from_slice(&VM1);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[192, 0, 2, 1]);
    f[30..34].copy_from_slice(&[192, 0, 2, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&2000u16.to_be_bytes());
    f
}

fn vtep(local: &str, remote: &str) -> Vtep {
    let mut s = VtepSettings::new(local.parse().unwrap_or(IpAddr::from([198, 18, 0, 1])));
    let mut v = VniSettings::new(
        Vni::new(5001).unwrap_or(Vni::from_u24(5001)),
        vec![PortId(0)],
    );
    v.remotes = vec![remote.parse().unwrap_or(IpAddr::from([198, 18, 0, 2]))];
    s.vnis.push(v);
    s.mtu = 9000;
    Vtep::new(s, Instant::now()).unwrap_or_else(|e| panic!("bench settings: {e}"))
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    for len in [64usize, 1400] {
        let f = frame(len);
        g.throughput(Throughput::Elements(1));
        // Host 1 knows VM2 behind host 2: every frame is one unicast encapsulation.
        let mut h1 = vtep("198.18.0.1", "198.18.0.2");
        let mut out = Outbox::new();
        let now = Instant::now();
        let mut reply = f.clone();
        reply[..6].copy_from_slice(&VM1);
        reply[6..12].copy_from_slice(&VM2);
        let mut vx = vec![0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0];
        vx.extend_from_slice(&reply);
        let _ = h1.handle_underlay(
            now,
            "198.18.0.2".parse().unwrap_or(IpAddr::from([0; 4])),
            &vx,
            &mut out,
        );
        out.clear();
        g.bench_function(format!("encapsulate_{len}B"), |b| {
            b.iter(|| {
                let _ = h1.handle_port_frame(
                    now,
                    PortId(0),
                    &VirtioNetHdr::NONE,
                    black_box(&f),
                    &mut out,
                );
                out.clear();
            });
        });
        // Host 2 receives from host 1: decapsulation, a learning refresh, one local delivery.
        let mut h2 = vtep("198.18.0.2", "198.18.0.1");
        let src: IpAddr = IpAddr::from([198, 18, 0, 1]);
        let mut vx = vec![0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0];
        vx.extend_from_slice(&f);
        let _ = h2.handle_underlay(now, src, &vx, &mut out);
        out.clear();
        g.bench_function(format!("decapsulate_{len}B"), |b| {
            b.iter(|| {
                let _ = h2.handle_underlay(now, src, black_box(&vx), &mut out);
                out.clear();
            });
        });
    }
    g.finish();
}

fn fdb(c: &mut Criterion) {
    const N: u32 = 1_000_000;
    let mut fdb = Fdb::new();
    let settings = VniTableSettings {
        aging_ms: 300_000,
        max_entries: 2 * N as usize,
    };
    let vni = fdb
        .add_vni(Vni::from_u24(5001), settings)
        .unwrap_or_else(|e| panic!("{e}"));
    let mac = |i: u32| MacAddr::from_u64(0x0200_0000_0000 | u64::from(i));
    let remote = |i: u32| {
        let [_, _, hi, lo] = i.to_be_bytes();
        Location::Remote(IpAddr::from([198, 18, hi & 0x3f, lo]))
    };
    for i in 0..N {
        fdb.learn(vni, mac(i), remote(i % 1000), 0, &mut Builtin);
    }
    // The index's bytes plus the aging queue's (16 per learned entry): the memory target.
    let bytes = fdb.memory() + 16 * fdb.len();
    println!(
        "fdb_1M/memory: {} entries in {:.1} MiB (index {:.1} MiB)",
        fdb.len(),
        bytes as f64 / f64::from(1 << 20),
        fdb.memory() as f64 / f64::from(1 << 20)
    );
    let mut g = c.benchmark_group("fdb_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(fdb.lookup(vni, mac(i)))
        });
    });
    g.finish();
    // As the pipeline looks up: one reader for a batch of 32 frames, their keys prefetched
    // first, then looked up one by one (throughput: per lookup).
    const BATCH: u32 = 32;
    let mut g = c.benchmark_group("fdb_1M");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function("lookup_batch_32", |b| {
        b.iter(|| {
            let start = i;
            let batch = (0..BATCH).map(|k| (start + k * 7919) % N);
            let reader = fdb.reader();
            reader.prefetch(batch.clone().map(|j| (vni, mac(j))));
            for j in batch {
                black_box(reader.lookup(vni, mac(j)));
            }
            i = (start + BATCH * 7919) % N;
        });
    });
    g.finish();
    let mut g = c.benchmark_group("fdb_1M");
    g.throughput(Throughput::Elements(1));
    g.bench_function("refresh", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(fdb.learn(vni, mac(i), remote(i % 1000), 1, &mut Builtin))
        });
    });
    g.finish();
    // Learning new MACs into a fresh table, one million per iteration batch.
    c.bench_function("fdb_learn_new_1M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut fresh = Fdb::new();
                let v = fresh
                    .add_vni(Vni::from_u24(1), settings)
                    .unwrap_or_else(|e| panic!("{e}"));
                let start = Instant::now();
                for i in 0..N {
                    fresh.learn(v, mac(i), remote(i % 1000), 0, &mut Builtin);
                }
                total += start.elapsed() / N;
            }
            total
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = pipeline, fdb
}
criterion_main!(benches);
