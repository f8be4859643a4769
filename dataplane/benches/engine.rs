//! Per-batch hot-path costs of the engine, without I/O: the forwarding stage
//! over a 64-packet batch, the SPSC ring (push+publish+pop+release), and a
//! handoff between two workers of a gateway (a 64-packet batch copied into
//! the ring by one `HandoffPort::send` and out into the other worker's
//! frames by its `recv`, on one thread: the work of both sides, no
//! cross-core cache traffic).
//! `cargo bench -p mongate-dataplane --bench engine`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongate_dataplane::engine::{Arena, BATCH_SIZE, Batch, FramePool, Packet, Stage};
use mongate_dataplane::forward::{ForwardRule, L3Forward};
use mongate_dataplane::ring::ShmRing;
use std::hint::black_box;

fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&u16::try_from(len - 14).unwrap().to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f
}

fn forward_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_stage");
    for len in [60usize, 1514] {
        let mut arena = Arena::new(256, 2048, 256, false).unwrap();
        let mut pool = FramePool::new(&arena);
        let tmpl = frame(len);
        let mut pkts = Vec::new();
        for _ in 0..BATCH_SIZE {
            let a = pool.alloc().unwrap() + 256;
            arena
                .get_mut(a, u32::try_from(len).unwrap())
                .unwrap()
                .copy_from_slice(&tmpl);
            pkts.push(Packet::new(a, u32::try_from(len).unwrap(), 0, 0));
        }
        let mut stage = L3Forward::new(1500).with_rule(
            0,
            ForwardRule {
                out_port: 1,
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
            },
        );
        let mut batch = Batch::new();
        g.throughput(Throughput::Elements(BATCH_SIZE as u64));
        g.bench_function(format!("l3_forward_batch64_{len}B"), |b| {
            b.iter(|| {
                batch.clear();
                for p in &pkts {
                    batch.push(*p);
                }
                // Keep TTLs from running out: reset them (one store each).
                for p in &pkts {
                    arena.get_mut(p.addr + 22, 1).unwrap()[0] = 64;
                }
                stage.process(0, &mut arena, &mut batch);
                black_box(batch.as_slice()[BATCH_SIZE - 1].verdict);
            })
        });
    }
    g.finish();
}

fn ring_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let size = 1024u32;
    let layout = std::alloc::Layout::from_size_align(ShmRing::<u64>::bytes(size), 64).unwrap();
    // SAFETY: non-zero layout; freed at the end of the function.
    let mem = unsafe { std::alloc::alloc_zeroed(layout) };
    let base = std::ptr::NonNull::new(mem).unwrap();
    // SAFETY: fresh aligned memory of the right size; one producer, one consumer.
    let ring = unsafe { ShmRing::<u64>::init(base, layout.size(), size) }.unwrap();
    {
        // SAFETY: one producer and one consumer, in this thread; both end with
        // this block, before the memory is freed.
        let (mut p, mut cns) = unsafe { (ring.producer(), ring.consumer()) };
        g.throughput(Throughput::Elements(64));
        g.bench_function("spsc_push_pop_batch64", |b| {
            b.iter(|| {
                for i in 0..64u64 {
                    p.push(i);
                }
                p.publish();
                let mut s = 0;
                while let Some(v) = cns.pop() {
                    s += v;
                }
                cns.release();
                black_box(s)
            })
        });
    }
    g.finish();
    // SAFETY: allocated above with this layout; the ring halves are dropped.
    unsafe { std::alloc::dealloc(mem, layout) };
}

fn handoff_batch(c: &mut Criterion) {
    use mongate_dataplane::engine::{Port, Verdict};
    let mut g = c.benchmark_group("handoff");
    for len in [64usize, 512, 1514] {
        let mut links = mongate_dataplane::worker::handoff::mesh(2, 1).unwrap();
        let mut to_b = links[0].ports.remove(0);
        let mut from_a = links[1].ports.remove(0);
        let mut a = Arena::new(256, 2048, 256, false).unwrap();
        let mut pa = FramePool::new(&a);
        let mut b = Arena::new(256, 2048, 256, false).unwrap();
        let mut pb = FramePool::new(&b);
        let tmpl = frame(len);
        let mut pkts = Vec::with_capacity(BATCH_SIZE);
        let mut out = Batch::new();
        g.throughput(Throughput::Elements(BATCH_SIZE as u64));
        g.bench_function(format!("send_recv_batch64_{len}B"), |bn| {
            bn.iter(|| {
                pkts.clear();
                for _ in 0..BATCH_SIZE {
                    let at = pa.alloc().unwrap() + 256;
                    let l = u32::try_from(len).unwrap();
                    a.get_mut(at, l).unwrap().copy_from_slice(&tmpl);
                    let mut p = Packet::new(at, l, 0, 0);
                    p.verdict = Verdict::Tx(1);
                    pkts.push(p);
                }
                black_box(to_b.send(&mut a, &mut pa, &mut pkts));
                out.clear();
                from_a.recv(&mut b, &mut pb, &mut out);
                for p in out.as_slice() {
                    pb.free(p.addr);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, forward_batch, ring_batch, handoff_batch);
criterion_main!(benches);
