//! io_uring UDP port on loopback (no root needed): receive through `recv` with
//! synthetic headers, relay out through `send`, ENOBUFS re-arm, malformed
//! outer headers, frame accounting on shutdown.

// Sequence numbers are < 200k and index vectors / pick filler bytes: the
// truncating casts below are intended.
#![allow(clippy::cast_possible_truncation)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::engine::{Arena, Batch, DropReason, FramePool, Packet, Port, Verdict};
use mongate_dataplane::uring::{UringConfig, UringPort};

const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;
const HEADROOM: u32 = 256;

/// Opens a port over `arena`.
fn open(cfg: &UringConfig, arena: &Arena, pool: &mut FramePool) -> UringPort {
    // SAFETY: every test declares the arena before the port, so the port is
    // dropped first, and passes this same arena and pool to every call.
    unsafe { UringPort::new(cfg, arena, pool) }.expect("open uring port")
}

/// The datagram payload for sequence number `seq`: 8-byte seq then a
/// seq-dependent filler of 0..57 bytes.
fn payload(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    let n = (seq % 57) as usize;
    buf.extend(std::iter::repeat_n(seq as u8 ^ 0x5a, n));
}

/// Checks `p` is a valid payload and returns its sequence number.
fn check_payload(p: &[u8]) -> u64 {
    assert!(p.len() >= 8, "payload too short: {}", p.len());
    let seq = u64::from_le_bytes(p[..8].try_into().unwrap());
    let mut want = Vec::new();
    payload(seq, &mut want);
    assert_eq!(p, &want[..], "payload of seq {seq} corrupted");
    seq
}

/// Independently parses the synthetic header of a received frame; returns
/// (src, dst, payload offset).
fn parse_synthetic(f: &[u8]) -> (SocketAddr, SocketAddr, usize) {
    let et = u16::from_be_bytes([f[12], f[13]]);
    let (src, dst, l4, ip_payload_len) = match et {
        0x0800 => {
            let ip = &f[14..34];
            assert_eq!(ip[0], 0x45);
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                f.len() - 14,
                "IPv4 total length"
            );
            assert_eq!(ip[9], 17);
            let s = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
            let d = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
            (s, d, 34, f.len() - 34)
        }
        0x86dd => {
            let ip = &f[14..54];
            assert_eq!(ip[0] >> 4, 6);
            assert_eq!(ip[6], 17);
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[4], ip[5]])),
                f.len() - 54,
                "IPv6 payload length"
            );
            let s = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let d = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            (s, d, 54, f.len() - 54)
        }
        other => panic!("unexpected ethertype {other:#x}"),
    };
    let udp = &f[l4..l4 + 8];
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        ip_payload_len,
        "UDP length"
    );
    let sp = u16::from_be_bytes([udp[0], udp[1]]);
    let dp = u16::from_be_bytes([udp[2], udp[3]]);
    (SocketAddr::new(src, sp), SocketAddr::new(dst, dp), l4 + 8)
}

/// Rewrites the outer destination (IP and UDP port) of a frame in place.
fn set_outer_dst(f: &mut [u8], dst: SocketAddr) {
    match dst {
        SocketAddr::V4(a) => {
            f[30..34].copy_from_slice(&a.ip().octets());
            f[36..38].copy_from_slice(&a.port().to_be_bytes());
        }
        SocketAddr::V6(a) => {
            f[38..54].copy_from_slice(&a.ip().octets());
            f[56..58].copy_from_slice(&a.port().to_be_bytes());
        }
    }
}

/// Sender -> UringPort -> (headers checked, dst rewritten) -> send -> sink.
/// The sender keeps at most `WINDOW` datagrams between itself and the sink, so
/// neither the port's buffer ring nor the sink's default socket buffer can
/// overflow: every datagram must arrive.
fn relay(bind: &str, n: u64, mode: &str, tweak: impl Fn(&mut UringConfig)) {
    const WINDOW: u64 = 128;
    let deadline = Instant::now() + Duration::from_secs(120);
    let arena = Arena::new(FRAMES, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut arena = arena;
    let mut cfg = UringConfig::new(bind.parse().unwrap(), 0);
    cfg.ring_entries = 1024;
    tweak(&mut cfg);
    let mut port = open(&cfg, &arena, &mut pool);
    let port_addr = port.local_addr();
    assert_eq!(port_addr.ip(), cfg.local.ip());
    assert_ne!(port_addr.port(), 0);
    assert!(port.name().contains(mode), "ring mode: {}", port.name());

    let sink = UdpSocket::bind(bind).unwrap();
    sink.set_nonblocking(true).unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let sender = UdpSocket::bind(bind).unwrap();
    let sender_addr = sender.local_addr().unwrap();

    let acked = Arc::new(AtomicU64::new(0));
    let tx_thread = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            let mut buf = Vec::with_capacity(64);
            for seq in 0..n {
                while seq >= acked.load(Ordering::Acquire) + WINDOW {
                    if Instant::now() > deadline {
                        return seq;
                    }
                    std::thread::yield_now();
                }
                payload(seq, &mut buf);
                sender.send_to(&buf, port_addr).unwrap();
            }
            n
        })
    };

    let mut batch = Batch::new();
    let mut seen_rx = vec![false; n as usize];
    let mut seen_sink = vec![false; n as usize];
    let (mut rx, mut at_sink) = (0u64, 0u64);
    let mut sink_buf = [0u8; 2048];
    while at_sink < n && Instant::now() < deadline {
        port.maintain(&mut pool);
        let got = port.recv(&mut arena, &mut pool, &mut batch);
        assert_eq!(got, batch.len());
        for p in batch.as_mut_slice() {
            assert_eq!(p.port, 0);
            assert_eq!(p.verdict, Verdict::Pending);
            // The whole synthetic header lies after the headroom.
            assert!(p.addr % u64::from(FRAME_SIZE) >= u64::from(HEADROOM));
            let f = arena.packet_mut(p).unwrap();
            let (src, dst, off) = parse_synthetic(f);
            assert_eq!(src, sender_addr);
            assert_eq!(dst, port_addr);
            let seq = check_payload(&f[off..]);
            assert!(
                !std::mem::replace(&mut seen_rx[seq as usize], true),
                "seq {seq} received twice"
            );
            rx += 1;
            set_outer_dst(f, sink_addr);
            p.verdict = Verdict::Tx(0);
        }
        let (sent, dropped) = port.send(&mut arena, &mut pool, batch.as_mut_slice());
        assert_eq!((sent, dropped), (got, 0));
        batch.clear();
        loop {
            match sink.recv_from(&mut sink_buf) {
                Ok((len, from)) => {
                    assert_eq!(
                        from, port_addr,
                        "relayed datagram must come from the port's socket"
                    );
                    let seq = check_payload(&sink_buf[..len]);
                    assert!(
                        !std::mem::replace(&mut seen_sink[seq as usize], true),
                        "seq {seq} relayed twice"
                    );
                    at_sink += 1;
                    acked.store(at_sink, Ordering::Release);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("sink: {e}"),
            }
        }
    }
    let sent_by_sender = tx_thread.join().unwrap();
    assert_eq!(sent_by_sender, n, "sender stopped at the deadline");
    assert_eq!(rx, n, "datagrams received by the port");
    assert_eq!(at_sink, n, "datagrams relayed to the sink");
    assert!(seen_rx.iter().all(|&s| s) && seen_sink.iter().all(|&s| s));

    // Reap the last send completions.
    while port.sends_in_flight() > 0 && Instant::now() < deadline {
        port.maintain(&mut pool);
    }
    let c = port.counters();
    assert_eq!(c.rx_packets, n);
    assert_eq!(c.tx_packets, n);
    assert_eq!(c.enobufs, 0, "the window is smaller than the buffer ring");
    assert_eq!(c.rearms, 1, "the multishot receive never ended");
    assert_eq!(
        (
            c.send_errors,
            c.tx_malformed,
            c.tx_full,
            c.recv_errors,
            c.rx_dropped
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(port.rx_buffers_posted(), 1024);

    port.shutdown(&mut pool);
    assert_eq!(
        pool.available(),
        FRAMES as usize,
        "every frame back in the pool after shutdown"
    );
}

#[test]
fn relay_100k_ipv4() {
    relay("127.0.0.1:0", 100_000, "defer_taskrun", |_| {});
}

#[test]
fn relay_20k_ipv4_with_send_to() {
    relay("127.0.0.1:0", 20_000, "defer_taskrun", |c| c.send_to = true);
}

#[test]
fn relay_5k_ipv4_coop_taskrun() {
    relay("127.0.0.1:0", 5_000, "coop_taskrun", |c| {
        c.defer_taskrun = false
    });
}

#[test]
fn relay_5k_ipv4_sqpoll() {
    relay("127.0.0.1:0", 5_000, "sqpoll", |c| {
        c.sqpoll_idle_ms = Some(10)
    });
}

#[test]
fn relay_20k_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIP: no IPv6 loopback on this host");
        return;
    }
    relay("[::1]:0", 20_000, "defer_taskrun", |_| {});
}

/// A 16-buffer ring and a burst of 200 datagrams queued before the port polls:
/// the multishot receive ends with ENOBUFS, `maintain` refills and re-arms, and
/// every datagram still arrives (the socket buffer holds them meanwhile).
#[test]
fn enobufs_ends_multishot_and_rearm_recovers() {
    const N: u64 = 200;
    let arena = Arena::new(64, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut arena = arena;
    let mut cfg = UringConfig::new("127.0.0.1:0".parse().unwrap(), 3);
    cfg.ring_entries = 16;
    let mut port = open(&cfg, &arena, &mut pool);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = Vec::new();
    for seq in 0..N {
        payload(seq, &mut buf);
        sender.send_to(&buf, port.local_addr()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = Batch::new();
    let mut next = 0u64;
    while next < N && Instant::now() < deadline {
        port.maintain(&mut pool);
        port.recv(&mut arena, &mut pool, &mut batch);
        for p in batch.as_slice() {
            assert_eq!(p.port, 3);
            let f = arena.packet(p).unwrap();
            let (_, _, off) = parse_synthetic(f);
            assert_eq!(
                check_payload(&f[off..]),
                next,
                "in order from one sender socket"
            );
            next += 1;
            pool.free(p.addr);
        }
        batch.clear();
    }
    assert_eq!(next, N);
    let c = port.counters();
    assert!(c.enobufs >= 1, "a 16-buffer ring must run dry: {c:?}");
    assert!(c.rearms > c.enobufs, "re-armed after every ENOBUFS: {c:?}");
    assert_eq!(c.rx_packets, N);
    port.shutdown(&mut pool);
    assert_eq!(pool.available(), 64);
}

/// Builds a packet in a fresh frame with `bytes` at the headroom.
fn packet_with(arena: &mut Arena, pool: &mut FramePool, bytes: &[u8], verdict: Verdict) -> Packet {
    let frame = pool.alloc().unwrap();
    let addr = frame + u64::from(HEADROOM);
    let len = u32::try_from(bytes.len()).unwrap();
    arena.get_mut(addr, len).unwrap().copy_from_slice(bytes);
    let mut p = Packet::new(addr, len, 0, 0);
    p.verdict = verdict;
    p
}

/// A valid Ethernet + IPv4 + UDP frame to `dst` with payload `pl`.
fn v4_frame(dst: SocketAddr, pl: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(d) = dst else {
        panic!("v4 only")
    };
    let mut f = vec![0u8; 42 + pl.len()];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&u16::try_from(28 + pl.len()).unwrap().to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&d.ip().octets());
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&d.port().to_be_bytes());
    f[38..40].copy_from_slice(&u16::try_from(8 + pl.len()).unwrap().to_be_bytes());
    f[42..].copy_from_slice(pl);
    f
}

#[test]
fn malformed_outer_headers_are_counted_drops() {
    let arena = Arena::new(256, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut arena = arena;
    let mut cfg = UringConfig::new("127.0.0.1:0".parse().unwrap(), 0);
    cfg.ring_entries = 64;
    let mut port = open(&cfg, &arena, &mut pool);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let dst = sink.local_addr().unwrap();
    let good = v4_frame(dst, b"intact");

    let mut bad: Vec<Vec<u8>> = vec![Vec::new(), vec![0xff; 13], good[..40].to_vec()];
    let mut f = good.clone();
    f[12] = 0x88; // unknown EtherType
    bad.push(f);
    let mut f = good.clone();
    f[23] = 6; // TCP
    bad.push(f);
    let mut f = good.clone();
    f[39] = 200; // UDP length beyond the datagram
    bad.push(f);
    let mut f = good.clone();
    f[36..38].copy_from_slice(&[0, 0]); // port 0
    bad.push(f);
    // An IPv6 destination on an IPv4 socket.
    let mut f = vec![0u8; 62 + 4];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&12u16.to_be_bytes());
    f[20] = 17;
    f[52] = 0x20; // 2000::/3 destination, not v4-mapped
    f[56..58].copy_from_slice(&9u16.to_be_bytes());
    f[58..60].copy_from_slice(&12u16.to_be_bytes());
    bad.push(f);

    let before = pool.available();
    let mut pkts: Vec<Packet> = bad
        .iter()
        .map(|b| packet_with(&mut arena, &mut pool, b, Verdict::Tx(0)))
        .collect();
    // Not for this port: left alone (neither sent nor freed).
    let other = packet_with(&mut arena, &mut pool, &good, Verdict::Tx(1));
    let dropped_already = packet_with(
        &mut arena,
        &mut pool,
        &good,
        Verdict::Drop(DropReason::NoRoute),
    );
    pkts.push(other);
    pkts.push(dropped_already);
    pkts.push(packet_with(&mut arena, &mut pool, &good, Verdict::Tx(0)));
    let (sent, dropped) = port.send(&mut arena, &mut pool, &mut pkts);
    assert_eq!((sent, dropped), (1, bad.len()));
    assert_eq!(port.counters().tx_malformed, bad.len() as u64);
    // The port marks what it refused; returning those frames is the caller's job.
    let refused: Vec<_> = pkts
        .iter()
        .filter(|p| p.verdict == Verdict::Drop(DropReason::Unsupported))
        .collect();
    assert_eq!(refused.len(), bad.len());
    for p in refused {
        pool.free(p.addr);
    }
    // Malformed frames went back to the pool; `other`, `dropped_already` and the
    // valid one (until its completion) did not.
    assert_eq!(pool.available(), before - 3);

    let mut buf = [0u8; 64];
    let (len, from) = sink.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"intact");
    assert_eq!(from, port.local_addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    while port.sends_in_flight() > 0 && Instant::now() < deadline {
        port.maintain(&mut pool);
    }
    assert_eq!(port.counters().tx_packets, 1);
    assert_eq!(pool.available(), before - 2);
    pool.free(other.addr);
    pool.free(dropped_already.addr);
    port.shutdown(&mut pool);
    assert_eq!(pool.available(), 256);
}

#[test]
fn bad_config_is_an_error_not_a_panic() {
    let arena = Arena::new(64, FRAME_SIZE, HEADROOM, false).unwrap();
    let mut pool = FramePool::new(&arena);
    let mut cfg = UringConfig::new("127.0.0.1:0".parse().unwrap(), 0);
    cfg.ring_entries = 100; // not a power of two
    // SAFETY: creation fails before anything is registered; nothing outlives the arena.
    assert!(unsafe { UringPort::new(&cfg, &arena, &mut pool) }.is_err());
    cfg.ring_entries = 128; // more than the arena's frames
    // SAFETY: as above.
    assert!(unsafe { UringPort::new(&cfg, &arena, &mut pool) }.is_err());
    assert_eq!(pool.available(), 64);
}
