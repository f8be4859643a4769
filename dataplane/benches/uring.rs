//! io_uring UDP port vs a plain recvmmsg/sendmmsg loop on loopback, measured in
//! the same run (plain harness: prints packets/s).
//!
//! `cargo bench -p mongate-dataplane --bench uring` (MONGATE_BENCH_SECS sets
//! the measuring time per case, default 2).
//!
//! Cases (64-byte UDP payloads, batches of 64):
//! - `tx`: one thread sends to a sink socket nobody reads (the kernel drops
//!   once its buffer is full; that cost is in both variants alike).
//! - `relay`: a blaster thread (sendmmsg, pinned to core 0) floods the relay;
//!   the relay (pinned to core 1) receives and sends every datagram on to a
//!   sink. Figure = datagrams the relay sent per second.

// Frame lengths here are small constants (< 200): the casts cannot truncate.
#![allow(clippy::cast_possible_truncation)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::engine::{Arena, BATCH_SIZE, Batch, FramePool, Packet, Port, Verdict};
use mongate_dataplane::uring::mmsg::MmsgSocket;
use mongate_dataplane::uring::{UringConfig, UringPort};

const PAYLOAD: usize = 64;
const FRAMES: u32 = 8192;
const FRAME_SIZE: u32 = 2048;
const HEADROOM: u32 = 256;

fn secs() -> Duration {
    let s = std::env::var("MONGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s.clamp(0.1, 60.0))
}

fn pin(core: usize) {
    if let Some(id) =
        core_affinity::get_core_ids().and_then(|ids| ids.get(core % ids.len().max(1)).copied())
    {
        core_affinity::set_for_current(id);
    }
}

/// Writes an Ethernet + IPv4 + UDP frame to `dst` with a PAYLOAD-byte payload at `addr`.
fn write_v4_frame(arena: &mut Arena, addr: u64, dst: SocketAddr) -> u32 {
    let SocketAddr::V4(d) = dst else {
        unreachable!("bench is IPv4")
    };
    let len = 42 + PAYLOAD;
    let f = arena.get_mut(addr, len as u32).expect("frame in arena");
    f[..42].fill(0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((28 + PAYLOAD) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[127, 0, 0, 1]);
    f[30..34].copy_from_slice(&d.ip().octets());
    f[36..38].copy_from_slice(&d.port().to_be_bytes());
    f[38..40].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    f[42..].fill(0xab);
    len as u32
}

fn open_port(arena: &Arena, pool: &mut FramePool, send_to: bool) -> UringPort {
    let mut cfg = UringConfig::new("127.0.0.1:0".parse().unwrap(), 0);
    cfg.ring_entries = 4096;
    cfg.send_to = send_to;
    // SAFETY: the arena is declared before the port in every caller, so it
    // outlives it, and the same arena/pool are passed to every call.
    unsafe { UringPort::new(&cfg, arena, pool) }.expect("uring port")
}

/// A baseline socket with the same buffer sizes as the UringPort's default.
fn mmsg_socket() -> MmsgSocket {
    let m = MmsgSocket::new(UdpSocket::bind("127.0.0.1:0").unwrap(), BATCH_SIZE, 2048).unwrap();
    m.set_buffers(UringConfig::new("127.0.0.1:0".parse().unwrap(), 0).socket_buf_bytes)
        .unwrap();
    m
}

fn sink() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn tx_uring(d: Duration, send_to: bool) -> f64 {
    pin(1);
    let (_sink, dst) = sink();
    let arena = Arena::new(FRAMES, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut arena = arena;
    let mut port = open_port(&arena, &mut pool, send_to);
    let mut pkts = [Packet::new(0, 0, 0, 0); BATCH_SIZE];
    let run = |port: &mut UringPort,
               arena: &mut Arena,
               pool: &mut FramePool,
               pkts: &mut [Packet; BATCH_SIZE],
               until: Instant| {
        while Instant::now() < until {
            port.maintain(pool);
            let mut n = 0;
            while n < BATCH_SIZE {
                let Some(frame) = pool.alloc() else { break };
                let addr = frame + u64::from(HEADROOM);
                let len = write_v4_frame(arena, addr, dst);
                pkts[n] = Packet {
                    verdict: Verdict::Tx(0),
                    ..Packet::new(addr, len, 0, 0)
                };
                n += 1;
            }
            port.send(arena, pool, &mut pkts[..n]);
            // Refused frames are the caller's to return.
            for p in &pkts[..n] {
                if matches!(p.verdict, Verdict::Drop(_)) {
                    pool.free(p.addr);
                }
            }
        }
    };
    run(
        &mut port,
        &mut arena,
        &mut pool,
        &mut pkts,
        Instant::now() + d / 5,
    );
    let c0 = port.counters().tx_packets;
    let t0 = Instant::now();
    run(&mut port, &mut arena, &mut pool, &mut pkts, t0 + d);
    let pps = (port.counters().tx_packets - c0) as f64 / t0.elapsed().as_secs_f64();
    port.shutdown(&mut pool);
    pps
}

fn tx_mmsg(d: Duration) -> f64 {
    pin(1);
    let (_sink, dst) = sink();
    let mut m = mmsg_socket();
    m.fill(&[0xab; PAYLOAD]);
    let mut sent = 0u64;
    let end_warm = Instant::now() + d / 5;
    while Instant::now() < end_warm {
        m.send(BATCH_SIZE, dst).unwrap();
    }
    let t0 = Instant::now();
    while t0.elapsed() < d {
        sent += m.send(BATCH_SIZE, dst).unwrap() as u64;
    }
    sent as f64 / t0.elapsed().as_secs_f64()
}

/// Floods `dst` from core 0 until `stop`.
fn blaster(
    dst: SocketAddr,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        pin(0);
        let mut m = mmsg_socket();
        m.fill(&[0xcd; PAYLOAD]);
        let t0 = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
            sent += m.send(BATCH_SIZE, dst).unwrap_or(0) as u64;
        }
        sent
    })
}

fn relay_uring(d: Duration, send_to: bool) -> (f64, u64) {
    pin(1);
    let (_sink, dst) = sink();
    let arena = Arena::new(FRAMES, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut arena = arena;
    let mut port = open_port(&arena, &mut pool, send_to);
    let stop = Arc::new(AtomicBool::new(false));
    let h = blaster(port.local_addr(), Arc::clone(&stop), d * 3);
    let mut batch = Batch::new();
    let mut step = |port: &mut UringPort, arena: &mut Arena, pool: &mut FramePool| {
        port.maintain(pool);
        port.recv(arena, pool, &mut batch);
        for p in batch.as_mut_slice() {
            let f = arena.packet_mut(p).unwrap();
            if let SocketAddr::V4(a) = dst {
                f[30..34].copy_from_slice(&a.ip().octets());
                f[36..38].copy_from_slice(&a.port().to_be_bytes());
            }
            p.verdict = Verdict::Tx(0);
        }
        port.send(arena, pool, batch.as_mut_slice());
        for p in batch.as_slice() {
            if matches!(p.verdict, Verdict::Drop(_)) {
                pool.free(p.addr);
            }
        }
        batch.clear();
    };
    let warm = Instant::now() + d / 5;
    while Instant::now() < warm {
        step(&mut port, &mut arena, &mut pool);
    }
    let c0 = port.counters().tx_packets;
    let t0 = Instant::now();
    while t0.elapsed() < d {
        step(&mut port, &mut arena, &mut pool);
    }
    let pps = (port.counters().tx_packets - c0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let enobufs = port.counters().enobufs;
    port.shutdown(&mut pool);
    (pps, enobufs)
}

fn relay_mmsg(d: Duration) -> f64 {
    pin(1);
    let (_sink, dst) = sink();
    let mut m = mmsg_socket();
    let stop = Arc::new(AtomicBool::new(false));
    let h = blaster(m.socket().local_addr().unwrap(), Arc::clone(&stop), d * 3);
    let step = |m: &mut MmsgSocket| -> u64 {
        let n = m.recv().unwrap();
        if n == 0 {
            0
        } else {
            m.send(n, dst).unwrap() as u64
        }
    };
    let warm = Instant::now() + d / 5;
    while Instant::now() < warm {
        step(&mut m);
    }
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < d {
        sent += step(&mut m);
    }
    let pps = sent as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    pps
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it:
    // then only check that everything runs, briefly.
    let bench = std::env::args().any(|a| a == "--bench");
    let d = if bench {
        secs()
    } else {
        Duration::from_millis(100)
    };
    let rounds: usize = if bench {
        std::env::var("MONGATE_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .clamp(1, 20)
    } else {
        1
    };
    // Variants interleaved round by round so that background load hits all alike;
    // best of the rounds reported.
    let mut best = [[0f64; 3]; 2];
    for _ in 0..rounds {
        let tx = [tx_uring(d, false), tx_uring(d, true), tx_mmsg(d)];
        let relay = [
            relay_uring(d, false).0,
            relay_uring(d, true).0,
            relay_mmsg(d),
        ];
        for (b, r) in best.iter_mut().zip([tx, relay]) {
            for (x, y) in b.iter_mut().zip(r) {
                *x = x.max(y);
            }
        }
    }
    println!(
        "io_uring UDP port vs recvmmsg/sendmmsg, loopback, {PAYLOAD}-byte payloads, batch {BATCH_SIZE}, best of {rounds} x {d:?}"
    );
    println!(
        "{:<20} {:>16} {:>16} {:>10} {:>16}",
        "case (Mpps)", "uring SENDMSG", "uring SEND+addr", "mmsg", "SENDMSG/mmsg"
    );
    for (name, b) in ["tx (send only)", "relay (recv+send)"].iter().zip(best) {
        println!(
            "{name:<20} {:>16.3} {:>16.3} {:>10.3} {:>16.2}",
            b[0] / 1e6,
            b[1] / 1e6,
            b[2] / 1e6,
            b[0] / b[2]
        );
    }
}
