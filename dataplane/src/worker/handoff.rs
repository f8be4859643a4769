//! Worker handoff: what one worker of a gateway passes to another.
//!
//! Every pair of workers `(a, b)` is joined by a [`Link`]: two rings of the
//! one ring primitive (`crate::ring`) in one anonymous mapping, one per
//! direction, each single-producer (the sending worker) and single-consumer
//! (the receiving one). Nothing is locked and nothing is allocated per
//! packet: a handed-off packet is copied into a ring slot by its sender and
//! out of it into a frame of the receiver's own pool (each worker has its
//! own UMEM), in batches, with one Release store per batch and side.
//!
//! A [`HandoffPort`] is the sending and receiving end of one link as a
//! worker [`Port`]: a stage hands a packet to worker `k` by giving it the
//! verdict `Tx(port of k)`; the packet comes out of worker `k`'s port for
//! this worker as it arrived here (its arrival port index and receive time
//! kept), marked with [`Packet::handed_from`] and carrying the flow the
//! sender chose for it, if any ([`Packet::handoff_flow`]). A full ring is a counted drop (`DropReason::HandoffFull`), as a
//! full NIC ring is.
//!
//! Records smaller than a packet (an ack entry for a flow another worker
//! controls, a probe echo for the worker that probes, a LAN host learned)
//! travel as [`Note`]s on a second pair of rings of the same link.

use std::sync::Arc;

use crate::engine::{Arena, Batch, DropReason, FramePool, HANDOFF_NO_FLOW, Packet, Port, Verdict};
use crate::ring::{Consumer, Pod, Producer, ShmRing};
use crate::sys::mmap::Mmap;

/// Bytes of packet a handoff slot holds (frames up to 2 KiB less headroom fit).
pub const SLOT_DATA: usize = 2048 - 24;
/// Packet slots per direction of a link (2 MiB each way).
pub const PACKET_SLOTS: u32 = 1024;
/// Note slots per direction of a link.
pub const NOTE_SLOTS: u32 = 4096;
/// Bytes of a note's payload.
pub const NOTE_DATA: usize = 60;

/// One handed-off packet: `#[repr(C)]`, no padding.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    /// Receive time at the first worker (worker clock), ns.
    pub rx_ns: u64,
    /// Bytes of `data` in use.
    pub len: u32,
    /// The port index it arrived on at the first worker.
    pub port: u16,
    /// Reserved (0).
    pub pad: u16,
    /// The flow the sending stage chose ([`Packet::handoff_flow`]).
    pub flow: u32,
    /// Reserved (0).
    pub pad2: u32,
    /// The packet.
    pub data: [u8; SLOT_DATA],
}
const _: () = assert!(std::mem::size_of::<Slot>() == 2048);
// SAFETY: `#[repr(C)]` integers and a byte array whose sizes sum to the
// struct's size (asserted above): no padding, every bit pattern valid.
unsafe impl Pod for Slot {}

/// A record for another worker: a kind and its bytes (encoded and decoded
/// by the stage that uses them; a receiver checks what it reads).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Note {
    /// What the payload is (the stage's numbering).
    pub kind: u32,
    /// The payload.
    pub data: [u8; NOTE_DATA],
}
const _: () = assert!(std::mem::size_of::<Note>() == 64);
// SAFETY: `#[repr(C)]`, a u32 and a byte array, 64 bytes, no padding
// (asserted above): every bit pattern valid.
unsafe impl Pod for Note {}

impl Note {
    /// An empty note of `kind`.
    pub const fn new(kind: u32) -> Self {
        Self {
            kind,
            data: [0; NOTE_DATA],
        }
    }
}

/// The four rings joining two workers `a < b`, in one mapping.
struct Link {
    map: Arc<Mmap>,
    /// Packets a -> b, b -> a; notes a -> b, b -> a.
    rings: [usize; 4],
}

const RING_ALIGN: usize = 4096;

fn round_up(n: usize) -> usize {
    n.div_ceil(RING_ALIGN) * RING_ALIGN
}

impl Link {
    fn new() -> std::io::Result<Self> {
        let p = round_up(ShmRing::<Slot>::bytes(PACKET_SLOTS));
        let n = round_up(ShmRing::<Note>::bytes(NOTE_SLOTS));
        let map = Arc::new(Mmap::anonymous(2 * p + 2 * n, false)?);
        Ok(Self {
            map,
            rings: [0, p, 2 * p, 2 * p + n],
        })
    }

    /// Initialises ring `i` (0, 1: packets; 2, 3: notes).
    fn packets(&self, i: usize) -> std::io::Result<ShmRing<Slot>> {
        let off = self.rings[i];
        // SAFETY: `off` is inside the mapping, page-aligned, followed by at
        // least `bytes(PACKET_SLOTS)` bytes (layout above); the mapping lives
        // as long as the ends made from it (each end holds the `Arc`); the
        // ring is initialised once, before any end exists.
        unsafe { ShmRing::init(self.map.base().add(off), self.map.len() - off, PACKET_SLOTS) }
            .map_err(std::io::Error::other)
    }

    fn notes(&self, i: usize) -> std::io::Result<ShmRing<Note>> {
        let off = self.rings[i];
        // SAFETY: as in `packets`: inside the mapping, aligned, sized, held.
        unsafe { ShmRing::init(self.map.base().add(off), self.map.len() - off, NOTE_SLOTS) }
            .map_err(std::io::Error::other)
    }
}

/// Worker `me`'s ends of its links to every other worker.
pub struct WorkerLinks {
    /// This worker's index.
    pub me: usize,
    /// Per other worker (index order, `me` skipped): the packet port.
    pub ports: Vec<HandoffPort>,
    /// Notes to worker `k` (`None` at `me`).
    pub notes_out: Vec<Option<Producer<Note>>>,
    /// Notes from worker `k` (`None` at `me`).
    pub notes_in: Vec<Option<Consumer<Note>>>,
    /// Keeps the mappings alive as long as these ends.
    maps: Vec<Arc<Mmap>>,
}

impl WorkerLinks {
    /// The worker whose port is `ports[i]`.
    pub fn peer_of_port(&self, i: usize) -> usize {
        if i < self.me { i } else { i + 1 }
    }

    /// Moves the notes ends out (the stage keeps them); the ports stay.
    pub fn take_notes(&mut self) -> Notes {
        Notes {
            out: std::mem::take(&mut self.notes_out),
            inbound: std::mem::take(&mut self.notes_in),
            _maps: self.maps.clone(),
        }
    }
}

/// A stage's ends of the note rings (see [`WorkerLinks::take_notes`]).
pub struct Notes {
    out: Vec<Option<Producer<Note>>>,
    inbound: Vec<Option<Consumer<Note>>>,
    _maps: Vec<Arc<Mmap>>,
}

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notes")
            .field("workers", &self.out.len())
            .finish()
    }
}

impl Notes {
    /// Workers joined (including this one).
    pub fn workers(&self) -> usize {
        self.out.len()
    }

    /// Queues `n` for worker `to`; false (nothing queued) when its ring is
    /// full or `to` is this worker or unknown. Published by [`Self::flush`].
    pub fn push(&mut self, to: usize, n: Note) -> bool {
        match self.out.get_mut(to) {
            Some(Some(p)) => p.push(n),
            _ => false,
        }
    }

    /// Publishes every queued note.
    pub fn flush(&mut self) {
        for p in self.out.iter_mut().flatten() {
            p.publish();
        }
    }

    /// Takes up to `budget` notes from every other worker, in worker order,
    /// into `f(from, note)`; returns how many. A corrupt ring (the other
    /// side is this process: not by construction) gives nothing.
    pub fn drain(&mut self, budget: u32, mut f: impl FnMut(usize, &Note)) -> usize {
        let mut got = 0;
        for (k, c) in self.inbound.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            // `available` may count more than asked: take the budget only.
            let n = c.available(budget).unwrap_or(0).min(budget);
            for _ in 0..n {
                if let Some(note) = c.pop() {
                    f(k, &note);
                    got += 1;
                }
            }
            if n > 0 {
                c.release();
            }
        }
        got
    }
}

/// Builds the links of `workers` workers; element `w` holds worker `w`'s
/// ends, its ports numbered from `first_port` (one per other worker, in
/// worker order).
pub fn mesh(workers: usize, first_port: u16) -> std::io::Result<Vec<WorkerLinks>> {
    let mut out: Vec<WorkerLinks> = (0..workers)
        .map(|me| WorkerLinks {
            me,
            ports: Vec::new(),
            notes_out: (0..workers).map(|_| None).collect(),
            notes_in: (0..workers).map(|_| None).collect(),
            maps: Vec::new(),
        })
        .collect();
    // Ports are pushed in worker order for each worker: iterate pairs so
    // that worker w's port list is ordered by the other worker's index.
    let mut pending: Vec<Vec<(usize, HandoffPort)>> = (0..workers).map(|_| Vec::new()).collect();
    for a in 0..workers {
        for b in a + 1..workers {
            let link = Link::new()?;
            let (ab, ba) = (link.packets(0)?, link.packets(1)?);
            let (nab, nba) = (link.notes(2)?, link.notes(3)?);
            // SAFETY: each ring gets exactly one producer and one consumer,
            // held by the two workers' ends made here and nowhere else.
            let (ab_tx, ab_rx, ba_tx, ba_rx, nab_tx, nab_rx, nba_tx, nba_rx) = unsafe {
                (
                    ab.producer(),
                    ab.consumer(),
                    ba.producer(),
                    ba.consumer(),
                    nab.producer(),
                    nab.consumer(),
                    nba.producer(),
                    nba.consumer(),
                )
            };
            let port = |peer: usize, tx, rx| HandoffPort {
                index: 0,
                name: format!("handoff to worker {peer}"),
                too_long: 0,
                peer: u8::try_from(peer + 1).unwrap_or(u8::MAX),
                to: tx,
                from: rx,
                _map: link.map.clone(),
            };
            pending[a].push((b, port(b, ab_tx, ba_rx)));
            pending[b].push((a, port(a, ba_tx, ab_rx)));
            out[a].notes_out[b] = Some(nab_tx);
            out[b].notes_in[a] = Some(nab_rx);
            out[b].notes_out[a] = Some(nba_tx);
            out[a].notes_in[b] = Some(nba_rx);
            out[a].maps.push(link.map.clone());
            out[b].maps.push(link.map.clone());
        }
    }
    for (w, mut ps) in pending.into_iter().enumerate() {
        ps.sort_by_key(|(k, _)| *k);
        for (i, (_, mut p)) in ps.into_iter().enumerate() {
            p.index = first_port.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
            out[w].ports.push(p);
        }
    }
    Ok(out)
}

/// The port index at which worker `me` reaches worker `to` (ports from
/// `first_port`, one per other worker in worker order); `None` for itself.
pub fn port_to(me: usize, to: usize, first_port: u16) -> Option<u16> {
    let i = match to.cmp(&me) {
        core::cmp::Ordering::Less => to,
        core::cmp::Ordering::Equal => return None,
        core::cmp::Ordering::Greater => to - 1,
    };
    first_port.checked_add(u16::try_from(i).ok()?)
}

/// One worker's end of a link as a [`Port`]: sends copy packets into the
/// other worker's ring, receives copy them out into this worker's frames.
pub struct HandoffPort {
    index: u16,
    name: String,
    /// The other worker's index + 1 ([`Packet::handed_from`]).
    peer: u8,
    /// Packets received too long for this worker's frames (reported as
    /// the port's `rx_dropped`).
    too_long: u64,
    to: Producer<Slot>,
    from: Consumer<Slot>,
    _map: Arc<Mmap>,
}

impl HandoffPort {
    /// Its port index.
    pub fn index(&self) -> u16 {
        self.index
    }
}

impl Port for HandoffPort {
    fn maintain(&mut self, _pool: &mut FramePool) {}

    fn kernel_drops(&self) -> Option<crate::engine::KernelDrops> {
        Some(crate::engine::KernelDrops {
            rx_dropped: self.too_long,
            ..Default::default()
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, arena: &mut Arena, pool: &mut FramePool, out: &mut Batch) -> usize {
        let want = u32::try_from(out.spare()).unwrap_or(0);
        if want == 0 {
            return 0;
        }
        // `available` may count more than asked: no more than the batch
        // holds, and no more than there are frames for (the rest waits in
        // the ring; when it fills, the sender counts `handoff_full`).
        let frames = u32::try_from(pool.available()).unwrap_or(u32::MAX);
        let n = self.from.available(want).unwrap_or(0).min(want).min(frames);
        let mut got = 0;
        let headroom = u64::from(arena.headroom());
        for _ in 0..n {
            let Some(frame) = pool.alloc() else { break };
            let addr = frame + headroom;
            // Copied straight from the ring's slot into the frame.
            let got_one = self.from.pop_with(|s| {
                let len = (s.len as usize).min(SLOT_DATA);
                let len32 = u32::try_from(len).unwrap_or(0);
                let meta = (len32, s.port, s.rx_ns, s.flow);
                match arena.get_mut(addr, len32) {
                    Some(b) => {
                        b.copy_from_slice(&s.data[..len]);
                        Some(meta)
                    }
                    None => None,
                }
            });
            let (len32, port, rx_ns, flow) = match got_one {
                None => {
                    pool.free(frame);
                    break;
                }
                // Longer than this worker's frames hold after their
                // headroom (the workers' arenas differ): counted.
                Some(None) => {
                    pool.free(frame);
                    self.too_long += 1;
                    continue;
                }
                Some(Some(m)) => m,
            };
            let mut p = Packet::new(addr, len32, port, rx_ns);
            p.handoff = (u32::from(self.peer) << 24) | (flow & HANDOFF_NO_FLOW);
            out.push(p);
            got += 1;
        }
        if n > 0 {
            self.from.release();
        }
        got
    }

    fn send(
        &mut self,
        arena: &mut Arena,
        pool: &mut FramePool,
        pkts: &mut [Packet],
    ) -> (usize, usize) {
        let (mut sent, mut refused) = (0, 0);
        for p in pkts.iter_mut() {
            if p.verdict != Verdict::Tx(self.index) {
                continue;
            }
            let Some(bytes) = arena.packet(p).filter(|b| b.len() <= SLOT_DATA) else {
                p.verdict = Verdict::Drop(DropReason::Oversized);
                refused += 1;
                continue;
            };
            let pushed = self.to.push_with(|s| {
                s.rx_ns = p.rx_ns;
                s.len = p.len;
                s.port = p.port;
                s.pad = 0;
                s.flow = p.handoff & HANDOFF_NO_FLOW;
                s.pad2 = 0;
                s.data[..bytes.len()].copy_from_slice(bytes);
            });
            if pushed {
                // Copied: the frame is free again at once (a packet still
                // `Tx` after `send` is the port's, and this port is done).
                pool.free(arena.frame_of(p.addr));
                sent += 1;
            } else {
                p.verdict = Verdict::Drop(DropReason::HandoffFull);
                refused += 1;
            }
        }
        if sent > 0 {
            self.to.publish();
        }
        (sent, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BATCH_SIZE;

    const FRAMES: u32 = 256;

    struct Side {
        arena: Arena,
        pool: FramePool,
    }

    impl Side {
        fn new() -> Self {
            let arena = Arena::new(FRAMES, 2048, 256, false).expect("arena");
            let pool = FramePool::new(&arena);
            Self { arena, pool }
        }
        /// A packet of `bytes` arriving on `port`.
        fn packet(&mut self, bytes: &[u8], port: u16, rx_ns: u64) -> Packet {
            let f = self.pool.alloc().expect("frame");
            let addr = f + 256;
            let len = u32::try_from(bytes.len()).unwrap();
            self.arena
                .get_mut(addr, len)
                .unwrap()
                .copy_from_slice(bytes);
            Packet::new(addr, len, port, rx_ns)
        }
    }

    #[test]
    fn ports_are_numbered_by_the_other_workers_index() {
        for n in 1..6usize {
            let links = mesh(n, 5).unwrap();
            for (me, l) in links.iter().enumerate() {
                assert_eq!(l.ports.len(), n - 1);
                for (i, p) in l.ports.iter().enumerate() {
                    let to = l.peer_of_port(i);
                    assert_ne!(to, me);
                    assert_eq!(port_to(me, to, 5), Some(p.index()));
                    assert_eq!(p.name(), format!("handoff to worker {to}"));
                }
                assert_eq!(port_to(me, me, 5), None);
            }
        }
    }

    #[test]
    fn packets_cross_in_order_with_their_port_time_and_flow() {
        let mut links = mesh(2, 3).unwrap();
        let (mut a, mut b) = (Side::new(), Side::new());
        let mut to_b = links[0].ports.remove(0);
        let mut from_a = links[1].ports.remove(0);
        assert_eq!(to_b.index(), 3);
        let mut pkts: Vec<Packet> = (0..5u8)
            .map(|i| {
                let mut p = a.packet(&[i; 100], u16::from(i % 2), 1000 + u64::from(i));
                if i == 2 {
                    p.set_handoff_flow(77);
                }
                p.verdict = Verdict::Tx(3);
                p
            })
            .collect();
        // A packet for another port stays as it is.
        pkts[4].verdict = Verdict::Tx(1);
        let free = a.pool.available();
        assert_eq!(to_b.send(&mut a.arena, &mut a.pool, &mut pkts), (4, 0));
        assert_eq!(a.pool.available(), free + 4, "copied frames freed at once");
        assert_eq!(pkts[4].verdict, Verdict::Tx(1));
        let mut out = Batch::new();
        assert_eq!(from_a.recv(&mut b.arena, &mut b.pool, &mut out), 4);
        for (i, p) in out.as_slice().iter().enumerate() {
            let k = u8::try_from(i).unwrap();
            assert_eq!(b.arena.packet(p).unwrap(), &[k; 100][..]);
            assert_eq!(p.port, u16::from(k % 2));
            assert_eq!(p.rx_ns, 1000 + u64::from(k));
            assert_eq!(p.handed_from(), 1, "from worker 0");
            assert_eq!(p.handoff_flow(), (k == 2).then_some(77));
            assert_eq!(p.verdict, Verdict::Pending);
        }
        assert_eq!(from_a.recv(&mut b.arena, &mut b.pool, &mut out), 0);
    }

    #[test]
    fn a_full_ring_is_a_counted_drop_and_frames_come_back() {
        let mut links = mesh(2, 1).unwrap();
        let (mut a, mut b) = (Side::new(), Side::new());
        let mut to_b = links[0].ports.remove(0);
        let mut from_a = links[1].ports.remove(0);
        let mut sent = 0;
        let mut refused = 0;
        // Fill the ring in batches, nothing received.
        while sent < PACKET_SLOTS as usize + 10 {
            let mut pkts: Vec<Packet> = (0..BATCH_SIZE)
                .map(|_| {
                    let mut p = a.packet(&[7; 64], 0, 0);
                    p.verdict = Verdict::Tx(1);
                    p
                })
                .collect();
            let (s, r) = to_b.send(&mut a.arena, &mut a.pool, &mut pkts);
            for p in &pkts {
                if let Verdict::Drop(reason) = p.verdict {
                    assert_eq!(reason, DropReason::HandoffFull);
                    a.pool.free(p.addr);
                }
            }
            sent += s + r;
            refused += r;
        }
        assert_eq!(
            sent - refused,
            PACKET_SLOTS as usize,
            "the ring holds its slots"
        );
        assert!(refused >= 10);
        assert_eq!(a.pool.available(), FRAMES as usize, "no frame kept");
        // The receiver drains all of them, a batch at a time.
        let mut got = 0;
        loop {
            let mut out = Batch::new();
            let n = from_a.recv(&mut b.arena, &mut b.pool, &mut out);
            if n == 0 {
                break;
            }
            for p in out.as_slice() {
                b.pool.free(p.addr);
            }
            got += n;
        }
        assert_eq!(got, PACKET_SLOTS as usize);
    }

    #[test]
    fn oversized_packets_are_refused() {
        let mut links = mesh(2, 1).unwrap();
        let mut a = Side::new();
        let mut to_b = links[0].ports.remove(0);
        let mut p = a.packet(&[1; 1700], 0, 0);
        // Grow it past the slot (the frame has the room: 2048 - 256).
        p.len = u32::try_from(SLOT_DATA).unwrap() + 1;
        p.addr -= 256;
        p.verdict = Verdict::Tx(1);
        let mut pkts = [p];
        assert_eq!(to_b.send(&mut a.arena, &mut a.pool, &mut pkts), (0, 1));
        assert_eq!(pkts[0].verdict, Verdict::Drop(DropReason::Oversized));
    }

    #[test]
    fn notes_reach_the_worker_they_are_for() {
        let mut links = mesh(3, 1).unwrap();
        let mut n: Vec<Notes> = links.iter_mut().map(WorkerLinks::take_notes).collect();
        assert_eq!(n[0].workers(), 3);
        let mut note = Note::new(9);
        note.data[0] = 42;
        assert!(n[0].push(2, note));
        assert!(!n[0].push(0, note), "not to itself");
        assert!(!n[0].push(3, note), "no such worker");
        // Not published yet.
        assert_eq!(n[2].drain(16, |_, _| {}), 0);
        n[0].flush();
        let mut seen = Vec::new();
        assert_eq!(n[1].drain(16, |k, x| seen.push((k, x.kind, x.data[0]))), 0);
        assert_eq!(n[2].drain(16, |k, x| seen.push((k, x.kind, x.data[0]))), 1);
        assert_eq!(seen, vec![(0, 9, 42)]);
        // A full ring refuses, nothing is overwritten.
        let mut pushed = 0;
        while n[1].push(2, note) {
            pushed += 1;
        }
        assert_eq!(pushed, NOTE_SLOTS);
        n[1].flush();
        let mut got = 0;
        loop {
            let d = n[2].drain(1000, |k, _| assert_eq!(k, 1));
            if d == 0 {
                break;
            }
            got += d;
        }
        assert_eq!(got, NOTE_SLOTS as usize);
    }

    /// Sends and receives in random batch sizes against a model queue: every
    /// packet arrives once, in order, or was refused as full.
    #[test]
    fn random_batches_match_a_fifo_model() {
        let mut links = mesh(2, 1).unwrap();
        let (mut a, mut b) = (Side::new(), Side::new());
        let mut to_b = links[0].ports.remove(0);
        let mut from_a = links[1].ports.remove(0);
        let mut model = std::collections::VecDeque::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = 0u32;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = usize::try_from(x % 40).unwrap();
            if x & 1 == 0 {
                let n = k.min(a.pool.available());
                let vals: Vec<u32> = (next..next + u32::try_from(n).unwrap()).collect();
                next += u32::try_from(n).unwrap();
                let mut pkts: Vec<Packet> = vals
                    .iter()
                    .map(|v| {
                        let mut p = a.packet(&v.to_le_bytes(), 0, 0);
                        p.verdict = Verdict::Tx(1);
                        p
                    })
                    .collect();
                to_b.send(&mut a.arena, &mut a.pool, &mut pkts);
                for (p, v) in pkts.iter().zip(&vals) {
                    match p.verdict {
                        Verdict::Tx(1) => model.push_back(*v),
                        Verdict::Drop(DropReason::HandoffFull) => a.pool.free(p.addr),
                        other => panic!("{other:?}"),
                    }
                }
            } else {
                let mut out = Batch::new();
                from_a.recv(&mut b.arena, &mut b.pool, &mut out);
                for p in out.as_slice() {
                    let bytes = b.arena.packet(p).unwrap();
                    let v = u32::from_le_bytes(bytes.try_into().unwrap());
                    assert_eq!(Some(v), model.pop_front(), "in order, once");
                    b.pool.free(p.addr);
                }
            }
        }
        assert_eq!(a.pool.available(), FRAMES as usize);
    }
}
