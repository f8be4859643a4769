//! The per-core worker: owns its ports (all sharing one [`Arena`]), its frame
//! pool and its pipeline stage; runs `rx batch -> stage -> tx batch` in a busy
//! loop with an optional back-off, and publishes counters to shared memory.

// Rings between the workers of one gateway over an anonymous mapping.
#[allow(unsafe_code)]
pub mod handoff;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::{Arena, Batch, DropReason, FramePool, Nanos, Port, Stage, Verdict};
use crate::stats::{MAX_PORTS, WorkerCounters, bump};
use crate::sys::clock::now_ns;

/// What a worker does when a loop iteration found no packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdlePolicy {
    /// Empty iterations spent busy-polling before backing off.
    pub spin: u32,
    /// Then sleep this long per empty iteration (0: keep spinning, yield only).
    pub sleep_us: u32,
}

impl IdlePolicy {
    /// A site gateway's default (`mongate-dataplane run`): 200 empty
    /// iterations of busy-polling (a few tens of microseconds), then 50 us
    /// sleeps until a packet or a paced departure is due. An idle gateway
    /// costs a few percent of a core instead of all of it; a packet arriving
    /// on an idle gateway waits up to one sleep (~50-110 us with the
    /// kernel's default timer slack), a busy one never sleeps. The demo and
    /// the network tests run with it.
    pub const GATEWAY: IdlePolicy = IdlePolicy {
        spin: 200,
        sleep_us: 50,
    };
}

impl Default for IdlePolicy {
    fn default() -> Self {
        Self {
            spin: 2000,
            sleep_us: 0,
        }
    }
}

/// Local, unshared counters flushed to shared memory once per loop.
#[derive(Default)]
struct Local {
    rx: [u64; MAX_PORTS],
    rx_bytes: [u64; MAX_PORTS],
    tx: [u64; MAX_PORTS],
    tx_bytes: [u64; MAX_PORTS],
    drops: [u64; DropReason::COUNT],
}

/// One worker thread's state.
pub struct Worker<S: Stage> {
    // Ports before the arena: sockets close before the UMEM is unmapped.
    ports: Vec<Box<dyn Port>>,
    stage: S,
    pool: FramePool,
    arena: Arena,
    idle: IdlePolicy,
    rx: Batch,
    due: Batch,
    local: Local,
}

impl<S: Stage> Worker<S> {
    /// A worker over `ports` (index i = `Packet::port` i), all using `arena`.
    pub fn new(
        arena: Arena,
        pool: FramePool,
        ports: Vec<Box<dyn Port>>,
        stage: S,
        idle: IdlePolicy,
    ) -> Self {
        Self {
            ports,
            stage,
            pool,
            arena,
            idle,
            rx: Batch::new(),
            due: Batch::new(),
            local: Local::default(),
        }
    }

    /// The stage (for inspection after a run).
    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// The ports.
    pub fn ports(&self) -> &[Box<dyn Port>] {
        &self.ports
    }

    /// Free frames (for leak checks in tests).
    pub fn free_frames(&self) -> usize {
        self.pool.available()
    }

    /// Runs until `stop` is set. Counters go to `counters` (if given) once per
    /// busy iteration, and at least every 1024 idle ones.
    pub fn run(&mut self, stop: &AtomicBool, counters: Option<&WorkerCounters>) {
        let mut empty = 0u32;
        let mut idle_since_flush = 0u32;
        let mut next_kernel_poll = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = now_ns();
            if now >= next_kernel_poll {
                next_kernel_poll = now + 100_000_000;
                if let Some(c) = counters {
                    self.publish_kernel_drops(c);
                }
            }
            let moved = self.poll_once(now);
            if moved > 0 {
                empty = 0;
                if let Some(c) = counters {
                    bump(&c.busy_loops, 1);
                    self.flush(c, now);
                }
            } else {
                empty = empty.saturating_add(1);
                idle_since_flush += 1;
                if idle_since_flush >= 1024 {
                    if let Some(c) = counters {
                        bump(&c.idle_loops, u64::from(idle_since_flush));
                        self.flush(c, now);
                    }
                    idle_since_flush = 0;
                }
                if empty > self.idle.spin {
                    if self.idle.sleep_us > 0 {
                        std::thread::sleep(std::time::Duration::from_micros(u64::from(
                            self.idle.sleep_us,
                        )));
                    } else {
                        std::thread::yield_now();
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        if let Some(c) = counters {
            self.publish_kernel_drops(c);
            self.flush(c, now_ns());
        }
    }

    fn publish_kernel_drops(&self, c: &WorkerCounters) {
        for (p, pc) in self.ports.iter().zip(c.ports.iter()) {
            if let Some(k) = p.kernel_drops() {
                pc.kernel_rx_dropped.store(k.rx_dropped, Ordering::Relaxed);
                pc.kernel_rx_ring_full
                    .store(k.rx_ring_full, Ordering::Relaxed);
                pc.kernel_fill_empty.store(k.fill_empty, Ordering::Relaxed);
            }
        }
    }

    /// One iteration: housekeeping, one rx batch per port through the stage,
    /// paced departures. Returns packets moved.
    ///
    /// What is received and sent on at once (deliveries, echoes, a detour)
    /// leaves before the paced departures; a site gateway's planned relays
    /// are held by its stage and leave with the departures, at random places
    /// among the planned ones and ahead of best effort (docs/architecture.md,
    /// "Relays among the departures").
    pub fn poll_once(&mut self, now: Nanos) -> usize {
        for p in self.ports.iter_mut() {
            p.maintain(&mut self.pool);
        }
        self.stage.maintain(&mut self.pool);
        let received = self.receive(now);
        received + self.depart(now)
    }

    /// One rx batch per port through the stage, dispatched. Returns the
    /// packets received.
    fn receive(&mut self, now: Nanos) -> usize {
        let mut moved = 0;
        for i in 0..self.ports.len() {
            self.rx.clear();
            let n = self.ports[i].recv(&mut self.arena, &mut self.pool, &mut self.rx);
            if n == 0 {
                continue;
            }
            moved += n;
            if let Some(l) = self.local.rx.get_mut(i) {
                *l += n as u64;
            }
            if let Some(l) = self.local.rx_bytes.get_mut(i) {
                *l += self
                    .rx
                    .as_slice()
                    .iter()
                    .map(|p| u64::from(p.len))
                    .sum::<u64>();
            }
            self.stage.process(now, &mut self.arena, &mut self.rx);
            Self::dispatch(
                &mut self.ports,
                &mut self.arena,
                &mut self.pool,
                &mut self.local,
                &mut self.rx,
            );
        }
        moved
    }

    /// Paced departures: the stage's `poll` called until it adds nothing,
    /// at most 16 times per iteration (so a deep backlog never starves
    /// receive), its packets gathered and sent together: one kick per port
    /// for a batch, not one per call. A flow gives one packet per `poll`
    /// (the pacer's rule), so a flow with several packets due takes several
    /// calls; each call's packets used to be sent on their own, a copy-mode
    /// `sendto` each (docs/benchmarks.md, "Kicks per packet"). Returns the
    /// packets moved.
    fn depart(&mut self, now: Nanos) -> usize {
        let mut moved = 0;
        self.due.clear();
        for _ in 0..16 {
            if self.due.spare() == 0 {
                moved += self.send_due();
            }
            let before = self.due.len();
            self.stage.poll(now, &mut self.arena, &mut self.due);
            if self.due.len() == before {
                break;
            }
        }
        if !self.due.is_empty() {
            moved += self.send_due();
        }
        moved
    }

    /// Dispatches the departures gathered in `due`; returns how many.
    fn send_due(&mut self) -> usize {
        let n = self.due.len();
        Self::dispatch(
            &mut self.ports,
            &mut self.arena,
            &mut self.pool,
            &mut self.local,
            &mut self.due,
        );
        n
    }

    /// Sends, drops or leaves (held) every packet of `batch`, then clears it.
    fn dispatch(
        ports: &mut [Box<dyn Port>],
        arena: &mut Arena,
        pool: &mut FramePool,
        local: &mut Local,
        batch: &mut Batch,
    ) {
        let nports = ports.len();
        let mut want = [false; 16];
        for p in batch.as_mut_slice() {
            match p.verdict {
                Verdict::Tx(j) if usize::from(j) < nports => {
                    if let Some(w) = want.get_mut(usize::from(j)) {
                        *w = true;
                    }
                }
                Verdict::Tx(_) => p.verdict = Verdict::Drop(DropReason::NoRoute),
                Verdict::Pending => p.verdict = Verdict::Drop(DropReason::Other),
                _ => {}
            }
        }
        for (j, port) in ports.iter_mut().enumerate() {
            if !want.get(j).copied().unwrap_or(false) {
                continue;
            }
            // Refused packets come back as Drop(reason): counted and freed below.
            let (sent, _refused) = port.send(arena, pool, batch.as_mut_slice());
            let jj = u16::try_from(j).unwrap_or(u16::MAX);
            let bytes: u64 = batch
                .as_slice()
                .iter()
                .filter(|p| p.verdict == Verdict::Tx(jj))
                .map(|p| u64::from(p.len))
                .sum();
            if let Some(l) = local.tx.get_mut(j) {
                *l += sent as u64;
            }
            if let Some(l) = local.tx_bytes.get_mut(j) {
                *l += bytes;
            }
        }
        for p in batch.as_slice() {
            if let Verdict::Drop(r) = p.verdict {
                local.drops[r as usize] += 1;
                pool.free(p.addr);
            }
        }
        batch.clear();
    }

    fn flush(&mut self, c: &WorkerCounters, now: Nanos) {
        let l = &mut self.local;
        for i in 0..MAX_PORTS {
            for (v, a) in [
                (&mut l.rx[i], &c.ports[i].rx_packets),
                (&mut l.rx_bytes[i], &c.ports[i].rx_bytes),
                (&mut l.tx[i], &c.ports[i].tx_packets),
                (&mut l.tx_bytes[i], &c.ports[i].tx_bytes),
            ] {
                if *v > 0 {
                    bump(a, *v);
                    *v = 0;
                }
            }
        }
        for (v, a) in l.drops.iter_mut().zip(c.drops.iter()) {
            if *v > 0 {
                bump(a, *v);
                *v = 0;
            }
        }
        c.heartbeat_ns.store(now, Ordering::Relaxed);
    }
}

/// Pins the calling thread to `core` (a no-op with a warning result if the
/// core does not exist).
pub fn pin_to_core(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// A stop flag shared by the workers and the signal handler.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Packet;

    /// Delivers `n` frames of `len` bytes once; refuses every other packet on send.
    struct HalfPort {
        n: usize,
        len: u32,
        queued: Vec<u64>,
    }

    impl Port for HalfPort {
        fn recv(&mut self, _a: &mut Arena, pool: &mut FramePool, out: &mut Batch) -> usize {
            let mut got = 0;
            while got < self.n {
                let Some(f) = pool.alloc() else { break };
                out.push(Packet::new(f, self.len, 0, 0));
                got += 1;
            }
            self.n = 0;
            got
        }
        fn send(
            &mut self,
            _a: &mut Arena,
            _pool: &mut FramePool,
            pkts: &mut [Packet],
        ) -> (usize, usize) {
            let (mut sent, mut refused) = (0, 0);
            for (i, p) in pkts.iter_mut().enumerate() {
                if p.verdict != Verdict::Tx(0) {
                    continue;
                }
                if i % 2 == 1 {
                    p.verdict = Verdict::Drop(DropReason::TxFull);
                    refused += 1;
                } else {
                    self.queued.push(p.addr);
                    sent += 1;
                }
            }
            (sent, refused)
        }
        fn maintain(&mut self, _pool: &mut FramePool) {}
        fn name(&self) -> &str {
            "half"
        }
    }

    struct ToPort0;
    impl Stage for ToPort0 {
        fn process(&mut self, _now: Nanos, _a: &mut Arena, batch: &mut Batch) {
            for p in batch.as_mut_slice() {
                p.verdict = Verdict::Tx(0);
            }
        }
    }

    /// A port that never has a packet and counts its `send` calls (each a
    /// kick in copy mode) and the packets they carried.
    #[derive(Default)]
    struct EmptyPort {
        sends: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Port for EmptyPort {
        fn recv(&mut self, _a: &mut Arena, _pool: &mut FramePool, _out: &mut Batch) -> usize {
            0
        }
        fn send(
            &mut self,
            _a: &mut Arena,
            _pool: &mut FramePool,
            pkts: &mut [Packet],
        ) -> (usize, usize) {
            let n = pkts.iter().filter(|p| p.verdict == Verdict::Tx(0)).count();
            self.sends.fetch_add(1, Ordering::Relaxed);
            self.sent.fetch_add(n, Ordering::Relaxed);
            (n, 0)
        }
        fn maintain(&mut self, _pool: &mut FramePool) {}
        fn name(&self) -> &str {
            "empty"
        }
    }

    /// Idle loop iterations of a worker with nothing to do in `ms`.
    fn idle_loops(idle: IdlePolicy, ms: u64) -> u64 {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let c = std::sync::Arc::new(WorkerCounters::default());
        let (s2, c2) = (stop.clone(), c.clone());
        let t = std::thread::spawn(move || {
            let arena = Arena::new(64, 2048, 256, false).unwrap();
            let pool = FramePool::new(&arena);
            let mut w = Worker::new(
                arena,
                pool,
                vec![Box::new(EmptyPort::default())],
                ToPort0,
                idle,
            );
            w.run(&s2, Some(&c2));
        });
        std::thread::sleep(std::time::Duration::from_millis(ms));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        c.snapshot().idle_loops
    }

    /// The gateway's default does not spin a core when idle: a loop
    /// iteration per sleep (>= 50 us), so at most 4000 in 200 ms (plus the
    /// first 200 spins) where the old default (spin, then yield) makes
    /// millions.
    #[test]
    fn an_idle_gateway_worker_sleeps() {
        let n = idle_loops(IdlePolicy::GATEWAY, 200);
        assert!(n < 4_000 + 1_024, "{n} idle iterations in 200 ms");
        // (Idle iterations are published 1024 at a time, and a loaded test
        // machine may starve the thread: no lower bound. Busy-polling,
        // `--idle-sleep-us 0`, makes millions on an idle core.)
    }

    /// Refused packets are counted under their reason, not as sent bytes,
    /// and their frames go back to the pool; queued ones stay the port's.
    #[test]
    fn refused_sends_are_drops_not_tx() {
        let arena = Arena::new(64, 2048, 256, false).unwrap();
        let pool = FramePool::new(&arena);
        let port = HalfPort {
            n: 10,
            len: 100,
            queued: Vec::new(),
        };
        let mut w = Worker::new(
            arena,
            pool,
            vec![Box::new(port)],
            ToPort0,
            IdlePolicy::default(),
        );
        assert_eq!(w.poll_once(0), 10);
        let c = WorkerCounters::default();
        w.flush(&c, 0);
        let s = c.snapshot();
        assert_eq!(s.rx_packets[0], 10);
        assert_eq!(s.tx_packets[0], 5);
        assert_eq!(
            s.tx_bytes[0], 500,
            "only queued packets count as sent bytes"
        );
        assert_eq!(s.drops.get("tx_full"), Some(&5));
        assert_eq!(
            w.free_frames(),
            64 - 5,
            "refused frames returned, queued ones held"
        );
    }

    /// Releases `left` packets, one per `poll` (as the pacer does for a
    /// flow with several packets due).
    struct OnePerPoll {
        left: usize,
        frames: Vec<u64>,
    }

    impl Stage for OnePerPoll {
        fn process(&mut self, _now: Nanos, _a: &mut Arena, _batch: &mut Batch) {}
        fn poll(&mut self, _now: Nanos, _arena: &mut Arena, out: &mut Batch) {
            if self.left > 0
                && let Some(f) = self.frames.pop()
            {
                let mut p = Packet::new(f, 64, 0, 0);
                p.verdict = Verdict::Tx(0);
                if out.push(p) {
                    self.left -= 1;
                }
            }
        }
    }

    /// Departures of several `poll` calls in one loop leave in one send
    /// (one kick), not one send per call; more than a batch's worth goes
    /// out a batch at a time, and at most 16 calls run per iteration.
    #[test]
    fn departures_of_several_polls_leave_in_one_send() {
        for (due, sends, sent) in [(1, 1, 1), (5, 1, 5), (16, 1, 16), (40, 1, 16)] {
            let arena = Arena::new(64, 2048, 256, false).unwrap();
            let mut pool = FramePool::new(&arena);
            let frames: Vec<u64> = (0..due).filter_map(|_| pool.alloc()).collect();
            let port = EmptyPort::default();
            let (n_sends, n_sent) = (port.sends.clone(), port.sent.clone());
            let stage = OnePerPoll { left: due, frames };
            let mut w = Worker::new(
                arena,
                pool,
                vec![Box::new(port)],
                stage,
                IdlePolicy::default(),
            );
            assert_eq!(w.poll_once(0), sent, "{due} due");
            assert_eq!(n_sends.load(Ordering::Relaxed), sends, "{due} due: sends");
            assert_eq!(n_sent.load(Ordering::Relaxed), sent, "{due} due: sent");
        }
    }
}
