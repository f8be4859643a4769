use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::pcap::{self, PcapWriter};
use super::*;
use crate::sys::shm::TestDir;

fn all() -> Filter {
    Filter {
        sides: SIDE_LAN | SIDE_WAN,
        dirs: DIR_RX | DIR_TX,
        peer: None,
        flow: None,
        proto: None,
    }
}

#[test]
fn filter_matches_every_set_field_and_only_known_values() {
    let f = all();
    assert!(f.wants(SIDE_LAN, DIR_RX) && f.wants(SIDE_WAN, DIR_TX));
    assert!(!f.needs_info());
    assert!(f.matches(&FrameInfo::default()));
    let wan_rx = Filter {
        sides: SIDE_WAN,
        dirs: DIR_RX,
        ..all()
    };
    assert!(wan_rx.wants(SIDE_WAN, DIR_RX));
    assert!(!wan_rx.wants(SIDE_LAN, DIR_RX));
    assert!(!wan_rx.wants(SIDE_WAN, DIR_TX));
    let f = Filter {
        peer: Some(1),
        flow: Some(0xABCD),
        proto: Some(17),
        ..all()
    };
    assert!(f.needs_info());
    let hit = FrameInfo {
        peer: Some(1),
        flow: Some(0xABCD),
        proto: Some(17),
    };
    assert!(f.matches(&hit));
    assert!(!f.matches(&FrameInfo {
        peer: Some(0),
        ..hit
    }));
    assert!(!f.matches(&FrameInfo {
        flow: Some(1),
        ..hit
    }));
    assert!(!f.matches(&FrameInfo {
        proto: Some(6),
        ..hit
    }));
    // Unknown (e.g. an ARP frame has no protocol) never matches a set field.
    assert!(!f.matches(&FrameInfo { proto: None, ..hit }));
    let udp = Filter {
        proto: Some(17),
        ..all()
    };
    assert!(udp.matches(&FrameInfo {
        proto: Some(17),
        ..FrameInfo::default()
    }));
}

#[test]
fn slot_encoding_is_bounded_by_snaplen_and_slot() {
    let meta = SlotMeta {
        ts_ns: 42,
        generation: 7,
        port: 2,
        side: SIDE_WAN,
        dir: DIR_TX,
    };
    let frame: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let s = Slot::new(meta, &frame[..100], 64);
    assert_eq!((s.orig_len, s.cap_len), (100, 64));
    assert_eq!(s.bytes(), &frame[..64]);
    assert_eq!(
        (s.ts_ns, s.generation, s.port, s.side, s.dir),
        (42, 7, 2, SIDE_WAN, DIR_TX)
    );
    let s = Slot::new(meta, &frame, usize::MAX);
    assert_eq!((s.orig_len, s.cap_len as usize), (3000, SNAP_MAX));
    assert_eq!(s.bytes(), &frame[..SNAP_MAX]);
    // A slot claiming more than it holds is read within the slot.
    let mut bad = s;
    bad.cap_len = u32::MAX;
    assert_eq!(bad.bytes().len(), SNAP_MAX);
    assert_eq!(gen32(0x1_0000_0005), 5);
}

fn start(r: &MirrorRegion, generation: u64, filter: Filter, max_pps: u64, burst: u64) {
    r.start(&StartRequest {
        generation,
        filter,
        max_pps,
        burst,
        snaplen: 128,
        deadline_ns: 10 * crate::sys::SEC,
    });
}

fn frame(n: usize, tag: u8) -> Vec<u8> {
    vec![tag; n]
}

#[test]
fn tap_filters_limits_copies_and_counts() {
    let dir = TestDir::new("mirror");
    let path = dir.file("gw.mirror");
    let w = Arc::new(MirrorRegion::create(&path, 1).unwrap());
    let mut tap = MirrorTap::new(w.clone(), 0).unwrap();
    let r = MirrorRegion::open(&path).unwrap();
    // Another capture of the same gateway is refused while one runs.
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Busy(_))
    ));
    assert_eq!(r.workers(), 1);
    // SAFETY: the only consumer.
    let mut cons = unsafe { r.rings[0].consumer() };

    // Off: nothing is offered, nothing counted.
    tap.sync(0);
    assert!(!tap.on());
    tap.offer(0, 0, (SIDE_LAN, DIR_RX), &frame(60, 1), FrameInfo::default);
    tap.finish();
    assert!(cons.pop().is_none());

    // On: LAN rx, UDP only, 10 pps with a burst of 2, time as an argument.
    let f = Filter {
        sides: SIDE_LAN,
        dirs: DIR_RX,
        proto: Some(17),
        ..all()
    };
    start(&r, 99, f, 10, 2);
    tap.sync(0);
    assert!(tap.on());
    assert_eq!(r.counters(0).unwrap().applied.load(Ordering::Acquire), 99);
    assert!(r.applied_by_all(99));
    let udp = || FrameInfo {
        proto: Some(17),
        ..FrameInfo::default()
    };
    let tcp = || FrameInfo {
        proto: Some(6),
        ..FrameInfo::default()
    };
    tap.offer(0, 1, (SIDE_WAN, DIR_RX), &frame(60, 2), udp); // side
    tap.offer(0, 0, (SIDE_LAN, DIR_TX), &frame(60, 3), udp); // direction
    tap.offer(0, 0, (SIDE_LAN, DIR_RX), &frame(60, 4), tcp); // protocol
    for t in 5..9 {
        tap.offer(0, 0, (SIDE_LAN, DIR_RX), &frame(200, t), udp);
    }
    tap.finish();
    // The burst (2) went through, the other two were over the rate.
    let c = r.counters(0).unwrap();
    assert_eq!(c.captured.load(Ordering::Relaxed), 2);
    assert_eq!(c.limited.load(Ordering::Relaxed), 2);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    let a = cons.pop().unwrap();
    let b = cons.pop().unwrap();
    assert!(cons.pop().is_none());
    cons.release();
    assert_eq!((a.data[0], b.data[0]), (5, 6));
    assert_eq!((a.orig_len, a.cap_len, a.generation), (200, 128, 99));
    // 100 ms later one token came back (10 pps): one more frame.
    let t = 100_000_000;
    tap.offer(t, 0, (SIDE_LAN, DIR_RX), &frame(60, 9), udp);
    tap.offer(t, 0, (SIDE_LAN, DIR_RX), &frame(60, 10), udp);
    tap.finish();
    assert_eq!(c.captured.load(Ordering::Relaxed), 3);
    assert_eq!(c.limited.load(Ordering::Relaxed), 3);
    assert_eq!(cons.pop().unwrap().data[0], 9);
    cons.release();

    // A full ring: counted as dropped, never blocking.
    start(&r, 100, all(), 1_000_000, u64::from(SLOTS) + 10);
    tap.sync(t);
    assert_eq!(c.captured.load(Ordering::Relaxed), 0, "reset per session");
    for _ in 0..SLOTS + 5 {
        tap.offer(t, 0, (SIDE_LAN, DIR_RX), &frame(60, 11), FrameInfo::default);
    }
    tap.finish();
    assert_eq!(c.captured.load(Ordering::Relaxed), u64::from(SLOTS));
    assert_eq!(c.dropped.load(Ordering::Relaxed), 5);

    // The deadline turns it off by itself; stop turns it off too.
    tap.sync(10 * crate::sys::SEC);
    assert!(!tap.on());
    assert_eq!(c.applied.load(Ordering::Acquire), 0);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 5, "counters kept");
    start(&r, 101, all(), 10, 1);
    tap.sync(t);
    assert!(tap.on());
    r.stop();
    tap.sync(t);
    assert!(!tap.on());
    drop(r);
    // Once the first capture ended, another may open the region.
    assert!(MirrorRegion::open(&path).is_ok());
}

#[test]
fn open_refuses_what_is_not_a_mirror_region() {
    let dir = TestDir::new("mirror-bad");
    let path = dir.file("x.mirror");
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Io { .. })
    ));
    let _other = crate::sys::shm::ShmFile::create(&path, 4096, REGION_MODE).unwrap();
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Format(_))
    ));
    drop(_other);
    let f = crate::sys::shm::ShmFile::create(&path, region_bytes(1), REGION_MODE).unwrap();
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Format(_))
    ));
    // The previous format (one ring, "MGMIRR01"): a version error naming
    // both formats.
    let h = f.get::<Header>(0).unwrap();
    h.magic
        .store(u64::from_le_bytes(*b"MGMIRR01"), Ordering::Release);
    let e = MirrorRegion::open(&path).err().expect("refused");
    assert!(matches!(e, MirrorError::Version { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("format MGMIRR01") && msg.contains("reads MGMIRR02"),
        "{msg}"
    );
    // Any other magic is not a mirror region at all.
    h.magic
        .store(u64::from_le_bytes(*b"MGMIRRxx"), Ordering::Release);
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Format(_))
    ));
    drop(f);
    // A region of this format whose length is not its workers' geometry.
    let two = MirrorRegion::create(&path, 2).unwrap();
    drop(two);
    let f = crate::sys::shm::ShmFile::create(&path, region_bytes(2), REGION_MODE).unwrap();
    let h = f.get::<Header>(0).unwrap();
    // Three workers in a file sized for two.
    h.slots.store(u64::from(SLOTS), Ordering::Relaxed);
    h.slot_bytes.store(SLOT_BYTES as u64, Ordering::Relaxed);
    h.workers.store(3, Ordering::Relaxed);
    h.magic.store(MIRROR_MAGIC, Ordering::Release);
    assert!(matches!(
        MirrorRegion::open(&path),
        Err(MirrorError::Format(_))
    ));
    drop(f);
    assert!(matches!(
        MirrorRegion::create(&path, 0),
        Err(MirrorError::Workers(0))
    ));
    assert!(matches!(
        MirrorRegion::create(&path, MAX_WORKERS + 1),
        Err(MirrorError::Workers(_))
    ));
}

#[test]
fn rings_per_worker_merge_in_timestamp_order_and_count_per_worker() {
    let dir = TestDir::new("mirror-workers");
    let path = dir.file("gw.mirror");
    let w = Arc::new(MirrorRegion::create(&path, 2).unwrap());
    let mut t0 = MirrorTap::new(w.clone(), 0).unwrap();
    let mut t1 = MirrorTap::new(w.clone(), 1).unwrap();
    assert!(matches!(
        MirrorTap::new(w.clone(), 2),
        Err(MirrorError::NoWorker {
            worker: 2,
            workers: 2
        })
    ));
    let r = MirrorRegion::open(&path).unwrap();
    assert_eq!(r.workers(), 2);
    assert!(r.counters(2).is_none());
    let off = |t: &mut MirrorTap, ts: u64, tag: u8| {
        t.offer(
            ts,
            0,
            (SIDE_LAN, DIR_RX),
            &frame(60, tag),
            FrameInfo::default,
        );
        t.finish();
    };

    // An earlier session leaves a slot in worker 1's ring.
    start(&r, 7, all(), 1_000_000, 1000);
    t1.sync(0);
    off(&mut t1, 5, 0xEE);
    // SAFETY: the only consumer of each ring.
    let mut m = unsafe { r.merge(gen32(8)) };
    start(&r, 8, all(), 1_000_000, 1000);
    assert!(!r.applied_by_all(8));
    t0.sync(0);
    assert_eq!(r.not_applied(8), vec![1]);
    t1.sync(0);
    assert!(r.applied_by_all(8));

    // Interleaved timestamps on the two rings.
    for (ts, tag) in [(10, 1), (30, 3), (50, 5)] {
        off(&mut t0, ts, tag);
    }
    for (ts, tag) in [(20, 2), (40, 4)] {
        off(&mut t1, ts, tag);
    }
    assert_eq!(m.fill(), 6, "five slots of this session and the stale one");
    let mut got = Vec::new();
    while let Some(f) = m.next(60) {
        got.push((f.ts_ns, f.worker, f.data[0]));
    }
    // 50 waits: worker 1 has shown nothing later than 40 yet, and 50 is
    // well within the reorder window.
    assert_eq!(got, vec![(10, 0, 1), (20, 1, 2), (30, 0, 3), (40, 1, 4)]);
    assert_eq!(m.pending(), 1);
    off(&mut t1, 60, 6);
    assert_eq!(m.fill(), 1);
    let f = m.next(70).expect("worker 1 is past 50");
    assert_eq!((f.ts_ns, f.worker, f.data[0]), (50, 0, 5));
    assert!(m.next(70).is_none(), "60 waits for worker 0");
    // Worker 0 runs on alone: its frames leave once older than the window.
    off(&mut t0, 1000, 7);
    m.fill();
    let f = m.next(80).expect("worker 0 is past 60");
    assert_eq!((f.ts_ns, f.data[0]), (60, 6));
    assert!(m.next(999 + REORDER_WINDOW_NS).is_none());
    let f = m.next(1000 + REORDER_WINDOW_NS).expect("window passed");
    assert_eq!((f.ts_ns, f.worker), (1000, 0));
    // The end: the rest in order, whatever the time.
    off(&mut t1, 2000, 9);
    off(&mut t0, 1500, 8);
    m.fill();
    let rest: Vec<u64> = std::iter::from_fn(|| m.next(u64::MAX))
        .map(|f| f.ts_ns)
        .collect();
    assert_eq!(rest, vec![1500, 2000]);
    assert_eq!(m.pending(), 0);

    // Counters per worker, for this session only.
    let counts = |w: usize| {
        let c = r.counters(w).unwrap();
        (
            c.captured.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.limited.load(Ordering::Relaxed),
        )
    };
    assert_eq!((counts(0), counts(1)), ((5, 0, 0), (4, 0, 0)));
    let sum: u64 = r
        .all_counters()
        .map(|c| c.captured.load(Ordering::Relaxed))
        .sum();
    assert_eq!(sum, 9);

    // Each worker's bucket holds its share: burst 4 over 2 workers.
    start(&r, 9, all(), 10, 4);
    t0.sync(0);
    t1.sync(0);
    for tag in 0..3 {
        t0.offer(
            0,
            0,
            (SIDE_LAN, DIR_RX),
            &frame(60, tag),
            FrameInfo::default,
        );
        t1.offer(
            0,
            0,
            (SIDE_LAN, DIR_RX),
            &frame(60, tag),
            FrameInfo::default,
        );
    }
    t0.finish();
    t1.finish();
    assert_eq!((counts(0), counts(1)), ((2, 0, 1), (2, 0, 1)));
    r.stop();
    t0.sync(0);
    assert!(!r.applied_by_all(0));
    t1.sync(0);
    assert!(r.applied_by_all(0));
}

#[test]
fn pcap_records_are_bounded_and_read_back() {
    let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
    w.record(1_700_000_000_123_456_789, 60, &[1u8; 60]).unwrap();
    w.record(1_700_000_001_000_000_001, 1500, &[2u8; 300])
        .unwrap();
    let b = w.into_inner();
    assert_eq!(&b[0..4], &pcap::MAGIC_NS.to_le_bytes());
    let (snap, link, recs) = pcap::parse(&b).unwrap();
    assert_eq!((snap, link, recs.len()), (100, pcap::LINKTYPE_ETHERNET, 2));
    assert_eq!(recs[0].wall_ns, 1_700_000_000_123_456_789);
    assert_eq!((recs[0].orig_len, recs[0].data.len()), (60, 60));
    assert_eq!(recs[1].wall_ns, 1_700_000_001_000_000_001);
    assert_eq!((recs[1].orig_len, recs[1].data.len()), (1500, 100));
    assert!(recs[1].data.iter().all(|&x| x == 2));
    // A cut record is refused, not read past the end.
    assert!(pcap::parse(&b[..b.len() - 1]).is_none());
    assert!(pcap::parse(&b[..10]).is_none());
    // The test helper's whole files parse too.
    let f = pcap::file_of(&[vec![9u8; 42]]);
    let (_, _, recs) = pcap::parse(&f).unwrap();
    assert_eq!(recs[0].data, vec![9u8; 42]);
}
