//! The thin I/O side of the link emulator: two AF_XDP sockets (copy mode,
//! one shared UMEM) on interfaces `a` and `b`, an XDP program redirecting
//! every frame to them, and one engine [`Worker`] running [`LinkStage`]:
//! frames arriving on `a` go through the a->b [`LinkModel`] and out of `b`
//! when due, and the other way round. No frame is copied by us.
//!
//! [`spawn`] / [`spawn_in_netns`] run it on a background thread and return a
//! [`LinkemHandle`] that stops it (and detaches XDP) on drop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mongate_dataplane::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use mongate_dataplane::bpf::{XdpAttachment, XdpFilter, XdpMode};
use mongate_dataplane::engine::{
    Arena, Batch, DropReason, FramePool, Nanos, Packet, Port, Stage, Verdict as EngineVerdict,
};
use mongate_dataplane::stats::{WorkerCounters, WorkerSnapshot};
use mongate_dataplane::worker::{IdlePolicy, Worker, pin_to_core};

use super::model::{ConfigError, DirectionConfig, DropCause, LinkModel, ModelStats, Verdict};

/// Everything the bridge needs.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// First interface (port 0).
    pub a: String,
    /// Second interface (port 1).
    pub b: String,
    /// The a -> b direction (frames received on `a`, sent on `b`).
    pub ab: DirectionConfig,
    /// The b -> a direction.
    pub ba: DirectionConfig,
    /// Seed of the a -> b model; b -> a uses `seed + 1`.
    pub seed: u64,
    /// Frames in the UMEM (2 KiB each). Bounds what can be held in flight:
    /// about 5/16 of them per direction (the rest feed the kernel's rings).
    pub frames: u32,
    /// XDP attach mode (veth: native).
    pub xdp_mode: XdpMode,
    /// Core to pin the worker to.
    pub core: Option<usize>,
    /// What the worker does when idle. Sleeping trades CPU for up to about
    /// `sleep_us` + 5 us of extra, uneven delay.
    pub idle: IdlePolicy,
    /// Run the worker thread SCHED_FIFO (priority 10): releases stay on
    /// time while other processes load the machine. The kernel's RT
    /// throttling still leaves others 5 % of the core under full load.
    pub realtime: bool,
}

impl BridgeConfig {
    /// A bridge between `a` and `b` with the same link model both ways,
    /// 16384 frames, native XDP if possible, a 10 us idle sleep.
    pub fn new(a: &str, b: &str, both: DirectionConfig) -> Self {
        Self {
            a: a.into(),
            b: b.into(),
            ab: both.clone(),
            ba: both,
            seed: 1,
            frames: 16384,
            xdp_mode: XdpMode::Auto,
            core: None,
            idle: IdlePolicy {
                spin: 2000,
                sleep_us: 10,
            },
            realtime: false,
        }
    }

    /// Checks the parts that cannot fail later.
    pub fn validate(&self) -> Result<(), BridgeError> {
        if self.a == self.b {
            return Err(BridgeError::SameInterface(self.a.clone()));
        }
        if !(1024..=1 << 20).contains(&self.frames) {
            return Err(BridgeError::Frames(self.frames));
        }
        self.ab.validate().map_err(BridgeError::AtoB)?;
        self.ba.validate().map_err(BridgeError::BtoA)?;
        Ok(())
    }

    /// Held frames allowed per direction.
    pub fn hold_capacity(&self) -> usize {
        self.frames as usize * 5 / 16
    }

    fn fill_target(&self) -> u32 {
        (self.frames / 8).min(4096)
    }
}

/// A configuration the bridge refuses.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Both sides on one interface.
    #[error("--a and --b are both {0}: a bridge needs two interfaces")]
    SameInterface(String),
    /// Frame count out of range.
    #[error("--frames {0}: must be in 1024..=1048576")]
    Frames(u32),
    /// Bad a -> b parameters.
    #[error("a->b: {0}")]
    AtoB(ConfigError),
    /// Bad b -> a parameters.
    #[error("b->a: {0}")]
    BtoA(ConfigError),
}

/// A held frame: ordered by departure, then arrival order.
type Held = Reverse<(u64, u64, u64, u32)>;

/// Counters of one direction beyond the model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirCounters {
    /// Frames dropped because the hold buffer (UMEM share) was full.
    pub hold_full: u64,
    /// Frames handed to the output port when due.
    pub released: u64,
    /// Bytes handed to the output port.
    pub released_bytes: u64,
    /// Most frames held at once.
    pub max_held: u64,
    /// Largest lateness of a release vs. its departure time (ns), i.e. the
    /// emulator's own scheduling error (excludes time spent in the kernel).
    pub max_late_ns: u64,
    /// Sum of release lateness (ns): mean = this / released.
    pub sum_late_ns: u64,
    /// Frames dropped while the link was blocked ([`LinkemHandle::set_blocked`]).
    pub blocked: u64,
    /// Frames dropped by the extra loss ([`LinkemHandle::set_extra_loss_ppm`]).
    pub impaired: u64,
}

struct Direction {
    model: LinkModel,
    held: BinaryHeap<Held>,
    cap: usize,
    seq: u64,
    out: u16,
    c: DirCounters,
}

impl Direction {
    fn new(model: LinkModel, cap: usize, out: u16) -> Self {
        Self {
            model,
            held: BinaryHeap::with_capacity(cap),
            cap,
            seq: 0,
            out,
            c: DirCounters::default(),
        }
    }
}

/// Failures switched on and off while the bridge runs (both directions).
#[derive(Debug, Default)]
pub struct Impairment {
    /// Drop every arriving frame (frames already held still leave): a
    /// blackhole with the carrier up.
    pub blocked: AtomicBool,
    /// Drop arriving frames with this probability, parts per million, on
    /// top of the model's own loss: a link gone bad.
    pub extra_loss_ppm: AtomicU32,
}

/// The engine stage: port 0 = `a`, port 1 = `b`; each direction's frames are
/// held in a fixed-capacity heap ordered by (departure, arrival order), so
/// FIFO whenever the model's departures are.
pub struct LinkStage {
    dirs: [Direction; 2],
    impairment: Arc<Impairment>,
    /// xorshift64* state of the extra loss.
    rng: u64,
}

impl LinkStage {
    /// A stage with `ab` for frames from port 0 and `ba` for port 1, each
    /// holding at most `hold_cap` frames.
    pub fn new(ab: LinkModel, ba: LinkModel, hold_cap: usize) -> Self {
        let cap = hold_cap.max(1);
        Self {
            dirs: [Direction::new(ab, cap, 1), Direction::new(ba, cap, 0)],
            impairment: Arc::new(Impairment::default()),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The failure switches of this stage (both directions).
    pub fn impairment(&self) -> Arc<Impairment> {
        self.impairment.clone()
    }

    /// Whether the extra loss takes this frame.
    fn extra_loss(&mut self, ppm: u32) -> bool {
        if ppm == 0 {
            return false;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
        x % 1_000_000 < u64::from(ppm)
    }

    /// Model counters, a->b then b->a.
    pub fn model_stats(&self) -> [ModelStats; 2] {
        [self.dirs[0].model.stats(), self.dirs[1].model.stats()]
    }

    /// Bridge counters, a->b then b->a.
    pub fn counters(&self) -> [DirCounters; 2] {
        [self.dirs[0].c, self.dirs[1].c]
    }

    /// Frames currently held, a->b then b->a.
    pub fn held(&self) -> [usize; 2] {
        [self.dirs[0].held.len(), self.dirs[1].held.len()]
    }
}

impl Stage for LinkStage {
    fn process(&mut self, now: Nanos, _arena: &mut Arena, batch: &mut Batch) {
        let blocked = self.impairment.blocked.load(Ordering::Relaxed);
        let extra_ppm = self.impairment.extra_loss_ppm.load(Ordering::Relaxed);
        for p in batch.as_mut_slice() {
            let lost = self.extra_loss(extra_ppm);
            let Some(d) = self.dirs.get_mut(usize::from(p.port)) else {
                p.verdict = EngineVerdict::Drop(DropReason::Other);
                continue;
            };
            if blocked {
                d.c.blocked += 1;
                p.verdict = EngineVerdict::Drop(DropReason::Other);
                continue;
            }
            if lost {
                d.c.impaired += 1;
                p.verdict = EngineVerdict::Drop(DropReason::Other);
                continue;
            }
            p.verdict = match d.model.on_arrival(now, p.len) {
                Verdict::Drop(DropCause::Loss) => EngineVerdict::Drop(DropReason::Other),
                Verdict::Drop(DropCause::QueueFull) => EngineVerdict::Drop(DropReason::QueueFull),
                // Due already and nothing ahead of it: straight out.
                Verdict::Hold(t) if t <= now && d.held.is_empty() => {
                    d.c.released += 1;
                    d.c.released_bytes += u64::from(p.len);
                    EngineVerdict::Tx(d.out)
                }
                Verdict::Hold(t) if d.held.len() < d.cap => {
                    // Within the reserved capacity: no allocation.
                    d.held.push(Reverse((t, d.seq, p.addr, p.len)));
                    d.seq += 1;
                    d.c.max_held = d.c.max_held.max(d.held.len() as u64);
                    EngineVerdict::Held
                }
                Verdict::Hold(_) => {
                    d.c.hold_full += 1;
                    EngineVerdict::Drop(DropReason::QueueFull)
                }
            };
        }
    }

    fn poll(&mut self, now: Nanos, _arena: &mut Arena, out: &mut Batch) {
        // Alternate directions so neither starves the other of batch room.
        loop {
            let mut moved = false;
            for (i, d) in self.dirs.iter_mut().enumerate() {
                if out.spare() == 0 {
                    return;
                }
                let Some(&Reverse((t, _, addr, len))) = d.held.peek() else {
                    continue;
                };
                if t > now {
                    continue;
                }
                d.held.pop();
                let late = now - t;
                d.c.released += 1;
                d.c.released_bytes += u64::from(len);
                d.c.max_late_ns = d.c.max_late_ns.max(late);
                d.c.sum_late_ns = d.c.sum_late_ns.saturating_add(late);
                let port = u16::try_from(i).unwrap_or(0);
                let mut p = Packet::new(addr, len, port, t);
                p.verdict = EngineVerdict::Tx(d.out);
                out.push(p);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

/// One direction's final figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DirReport {
    /// The configuration it ran with.
    pub config: DirectionConfig,
    /// The model's counters (arrivals, random loss, queue drops).
    pub model: ModelStats,
    /// The bridge's counters (hold overflow, releases, lateness).
    pub bridge: DirCounters,
    /// Frames the output port accepted for transmission.
    pub tx_packets: u64,
    /// Frames still held when the bridge stopped (discarded).
    pub left_held: usize,
    /// The kernel's receive drops on the input port (no fill buffer / ring full).
    pub kernel_rx_dropped: u64,
}

/// What a run of the bridge did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkReport {
    /// Interface `a`.
    pub a: String,
    /// Interface `b`.
    pub b: String,
    /// The sockets, as the engine names them.
    pub ports: Vec<String>,
    /// Seconds it ran.
    pub seconds: f64,
    /// a -> b.
    pub ab: DirReport,
    /// b -> a.
    pub ba: DirReport,
    /// Releases refused by a full transmit ring (both directions).
    pub tx_full: u64,
}

/// An opened bridge: XDP attached, sockets bound, not yet running.
/// Not `Send` (the worker's ports are not): open and run on one thread.
pub struct Bridge {
    // The worker (sockets) before the XDP attachments.
    worker: Worker<LinkStage>,
    _xdp: [XdpAttachment; 2],
    cfg: BridgeConfig,
    ports: Vec<String>,
}

impl Bridge {
    /// Attaches a redirect-everything XDP program to both interfaces and binds
    /// one copy-mode AF_XDP socket per interface (queue 0) on one UMEM.
    pub fn open(cfg: &BridgeConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let ab = LinkModel::new(cfg.ab.clone(), cfg.seed)?;
        let ba = LinkModel::new(cfg.ba.clone(), cfg.seed.wrapping_add(1))?;
        let xa = XdpAttachment::attach(&cfg.a, &XdpFilter::all(), 1, cfg.xdp_mode)?;
        let xb = XdpAttachment::attach(&cfg.b, &XdpFilter::all(), 1, cfg.xdp_mode)?;
        let arena = Arena::new(cfg.frames, 2048, 256, true)?;
        let mut pool = FramePool::new(&arena);
        let port_cfg = |ifname: &str| {
            let mut c = AfXdpConfig::new(ifname, 0);
            c.bind = BindMode::Copy;
            c
        };
        let mut pa = AfXdpPort::open(&port_cfg(&cfg.a), 0, &arena, None, Some(&xa))?;
        let mut pb = AfXdpPort::open(&port_cfg(&cfg.b), 1, &arena, Some(&pa), Some(&xb))?;
        pa.set_fill_target(cfg.fill_target());
        pb.set_fill_target(cfg.fill_target());
        // Hand the kernel its receive buffers before traffic arrives.
        pa.maintain(&mut pool);
        pb.maintain(&mut pool);
        let ports = vec![pa.name().to_string(), pb.name().to_string()];
        let stage = LinkStage::new(ab, ba, cfg.hold_capacity());
        let worker = Worker::new(
            arena,
            pool,
            vec![Box::new(pa), Box::new(pb)],
            stage,
            cfg.idle,
        );
        Ok(Self {
            worker,
            _xdp: [xa, xb],
            cfg: cfg.clone(),
            ports,
        })
    }

    /// Runs until `stop` is set; returns the counters.
    pub fn run(mut self, stop: &AtomicBool) -> LinkReport {
        if let Some(c) = self.cfg.core {
            pin_to_core(c);
        }
        set_timer_slack_1us();
        if self.cfg.realtime && !set_realtime() {
            eprintln!(
                "linkem: SCHED_FIFO refused ({}): running at normal priority",
                std::io::Error::last_os_error()
            );
        }
        let counters = WorkerCounters::default();
        let t0 = Instant::now();
        self.worker.run(stop, Some(&counters));
        let seconds = t0.elapsed().as_secs_f64();
        self.report(&counters.snapshot(), seconds)
    }

    fn report(&self, w: &WorkerSnapshot, seconds: f64) -> LinkReport {
        let st = self.worker.stage();
        let m = st.model_stats();
        let c = st.counters();
        let held = st.held();
        let at = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
        let dir = |i: usize, cfg: &DirectionConfig| DirReport {
            config: cfg.clone(),
            model: m[i],
            bridge: c[i],
            tx_packets: at(&w.tx_packets, 1 - i),
            left_held: held[i],
            kernel_rx_dropped: at(&w.kernel_rx_dropped, i),
        };
        LinkReport {
            a: self.cfg.a.clone(),
            b: self.cfg.b.clone(),
            ports: self.ports.clone(),
            seconds,
            ab: dir(0, &self.cfg.ab),
            ba: dir(1, &self.cfg.ba),
            tx_full: w.drops.get(DropReason::TxFull.name()).copied().unwrap_or(0),
        }
    }
}

/// Timer slack 1 us for this thread, so the idle sleep is close to what it asks.
fn set_timer_slack_1us() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and touches only the
    // calling thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, libc::c_ulong::from(1000u16)) };
}

/// Makes the calling thread SCHED_FIFO priority 10; false if refused.
fn set_realtime() -> bool {
    let p = libc::sched_param { sched_priority: 10 };
    // SAFETY: `p` is a valid sched_param; pid 0 = the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

type Outcome = Result<anyhow::Result<LinkReport>, String>;
/// What a bridge thread reports once set up: its block flag, or the error.
type Ready = Result<Arc<Impairment>, String>;

/// A bridge running on a background thread. Dropping it stops the bridge,
/// joins the thread and detaches XDP.
pub struct LinkemHandle {
    stop: Arc<AtomicBool>,
    impairment: Arc<Impairment>,
    thread: Option<JoinHandle<Outcome>>,
}

impl std::fmt::Debug for LinkemHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkemHandle")
            .field("running", &self.is_running())
            .finish()
    }
}

impl LinkemHandle {
    /// Whether the bridge thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Blocks (drops everything arriving, both ways) or unblocks the link,
    /// e.g. to emulate a WAN failure. Takes effect from the next batch.
    pub fn set_blocked(&self, on: bool) {
        self.impairment.blocked.store(on, Ordering::Relaxed);
    }

    /// Drops this share of the arriving frames (parts per million, both
    /// ways) on top of the configured loss, e.g. to emulate a link gone
    /// bad; 0 ends it. Takes effect from the next batch.
    pub fn set_extra_loss_ppm(&self, ppm: u32) {
        self.impairment
            .extra_loss_ppm
            .store(ppm.min(1_000_000), Ordering::Relaxed);
    }

    /// Stops the bridge and returns its counters.
    pub fn stop(mut self) -> anyhow::Result<LinkReport> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => Err(anyhow::anyhow!("{e}")),
            Some(Err(_)) => Err(anyhow::anyhow!("linkem thread panicked")),
            None => Err(anyhow::anyhow!("linkem already stopped")),
        }
    }
}

impl Drop for LinkemHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The body of a bridge thread: open, report readiness, run.
fn body(
    cfg: BridgeConfig,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::SyncSender<Ready>,
) -> anyhow::Result<LinkReport> {
    match Bridge::open(&cfg) {
        Ok(b) => {
            let _ = ready.send(Ok(b.worker.stage().impairment()));
            Ok(b.run(&stop))
        }
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            Err(e)
        }
    }
}

/// Waits for the bridge thread to come up (or fail to).
fn await_ready(
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Outcome>,
    rx: &std::sync::mpsc::Receiver<Ready>,
) -> anyhow::Result<LinkemHandle> {
    let mut h = LinkemHandle {
        stop,
        impairment: Arc::new(Impairment::default()),
        thread: Some(thread),
    };
    // Setup retries a busy queue for up to 2 s; 20 s means something is wrong.
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(imp)) => {
            h.impairment = imp;
            Ok(h)
        }
        Ok(Err(e)) => Err(anyhow::anyhow!("linkem: {e}")),
        Err(_) => match h.stop() {
            Err(e) => Err(e),
            Ok(_) => Err(anyhow::anyhow!("linkem: bridge did not start")),
        },
    }
}

/// Starts the bridge in the calling thread's network namespace on a
/// background thread; returns once it forwards (or with the setup error).
pub fn spawn(cfg: BridgeConfig) -> anyhow::Result<LinkemHandle> {
    cfg.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("linkem".into())
        .spawn(move || Ok(body(cfg, s, tx)))?;
    await_ready(stop, thread, &rx)
}

/// Like [`spawn`], inside network namespace `ns` (e.g. the middle namespace
/// of an emulated WAN link): the bridge thread enters it, so `cfg.a` and
/// `cfg.b` are interfaces of `ns`. Keep `ns` alive longer than the handle.
pub fn spawn_in_netns(
    ns: &mongate_testbed::Netns,
    cfg: BridgeConfig,
) -> anyhow::Result<LinkemHandle> {
    cfg.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let s = stop.clone();
    let inner = ns.enter_thread(move || body(cfg, s, tx))?;
    // Flatten the testbed's setns error into the outcome type.
    let thread = std::thread::Builder::new()
        .name("linkem-join".into())
        .spawn(move || match inner.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("entering the namespace: {e}")),
            Err(_) => Err("linkem thread panicked".to_string()),
        })?;
    await_ready(stop, thread, &rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linkem::model::Loss;

    fn stage(ab: DirectionConfig, ba: DirectionConfig, cap: usize) -> LinkStage {
        LinkStage::new(
            LinkModel::new(ab, 1).unwrap(),
            LinkModel::new(ba, 2).unwrap(),
            cap,
        )
    }

    fn batch(frames: &[(u64, u16)]) -> Batch {
        let mut b = Batch::new();
        for &(addr, port) in frames {
            b.push(Packet::new(addr, 100, port, 0));
        }
        b
    }

    fn arena() -> Arena {
        Arena::new(64, 2048, 256, false).unwrap()
    }

    #[test]
    fn perfect_link_forwards_at_once_to_the_other_port() {
        let mut a = arena();
        let mut s = stage(DirectionConfig::default(), DirectionConfig::default(), 8);
        let mut b = batch(&[(0, 0), (2048, 1)]);
        s.process(10, &mut a, &mut b);
        assert_eq!(b.as_slice()[0].verdict, EngineVerdict::Tx(1));
        assert_eq!(b.as_slice()[1].verdict, EngineVerdict::Tx(0));
        assert_eq!(s.counters()[0].released, 1);
    }

    #[test]
    fn delayed_frames_are_held_then_released_in_order() {
        let mut a = arena();
        let delay = DirectionConfig {
            delay_ns: 1000,
            ..DirectionConfig::default()
        };
        let mut s = stage(delay, DirectionConfig::default(), 8);
        let mut b = batch(&[(0, 0), (2048, 0), (4096, 0)]);
        s.process(10, &mut a, &mut b);
        assert!(
            b.as_slice()
                .iter()
                .all(|p| p.verdict == EngineVerdict::Held)
        );
        let mut out = Batch::new();
        s.poll(1009, &mut a, &mut out);
        assert!(out.is_empty(), "not due yet");
        s.poll(1010, &mut a, &mut out);
        let addrs: Vec<u64> = out.as_slice().iter().map(|p| p.addr).collect();
        assert_eq!(addrs, vec![0, 2048, 4096]);
        assert!(
            out.as_slice()
                .iter()
                .all(|p| p.verdict == EngineVerdict::Tx(1))
        );
        assert_eq!(s.held(), [0, 0]);
    }

    #[test]
    fn a_frame_behind_held_ones_waits_its_turn() {
        // Zero delay, but a held frame ahead: no overtaking via the fast path.
        let mut a = arena();
        let mut s = stage(
            DirectionConfig {
                rate_bps: 8_000_000,
                burst_bytes: 0,
                ..DirectionConfig::default()
            },
            DirectionConfig::default(),
            8,
        );
        let mut b = batch(&[(0, 0), (2048, 0)]);
        s.process(0, &mut a, &mut b);
        assert_eq!(b.as_slice()[0].verdict, EngineVerdict::Tx(1));
        assert_eq!(b.as_slice()[1].verdict, EngineVerdict::Held);
    }

    #[test]
    fn hold_overflow_and_loss_are_counted_drops() {
        let mut a = arena();
        let delay = DirectionConfig {
            delay_ns: 1000,
            ..DirectionConfig::default()
        };
        let lossy = DirectionConfig {
            loss: Loss::Bernoulli { p: 1.0 },
            ..DirectionConfig::default()
        };
        let mut s = stage(delay, lossy, 2);
        let mut b = batch(&[(0, 0), (2048, 0), (4096, 0), (6144, 1)]);
        s.process(0, &mut a, &mut b);
        let v: Vec<_> = b.as_slice().iter().map(|p| p.verdict).collect();
        assert_eq!(
            v,
            vec![
                EngineVerdict::Held,
                EngineVerdict::Held,
                EngineVerdict::Drop(DropReason::QueueFull),
                EngineVerdict::Drop(DropReason::Other),
            ]
        );
        assert_eq!(s.counters()[0].hold_full, 1);
        assert_eq!(s.model_stats()[1].lost, 1);
    }

    #[test]
    fn blocked_link_drops_arrivals_but_releases_held() {
        let mut a = arena();
        let delay = DirectionConfig {
            delay_ns: 1000,
            ..DirectionConfig::default()
        };
        let mut s = stage(delay, DirectionConfig::default(), 8);
        let mut b = batch(&[(0, 0)]);
        s.process(0, &mut a, &mut b);
        s.impairment().blocked.store(true, Ordering::Relaxed);
        let mut b = batch(&[(2048, 0), (4096, 1)]);
        s.process(0, &mut a, &mut b);
        assert!(
            b.as_slice()
                .iter()
                .all(|p| p.verdict == EngineVerdict::Drop(DropReason::Other))
        );
        assert_eq!(s.counters()[0].blocked + s.counters()[1].blocked, 2);
        let mut out = Batch::new();
        s.poll(1000, &mut a, &mut out);
        assert_eq!(out.len(), 1, "the frame held before the block leaves");
        s.impairment().blocked.store(false, Ordering::Relaxed);
        let mut b = batch(&[(2048, 1)]);
        s.process(2000, &mut a, &mut b);
        assert_eq!(b.as_slice()[0].verdict, EngineVerdict::Tx(0));
    }

    #[test]
    fn extra_loss_takes_its_share_both_ways() {
        let mut a = Arena::new(256, 2048, 256, false).unwrap();
        let mut s = stage(DirectionConfig::default(), DirectionConfig::default(), 8);
        s.impairment()
            .extra_loss_ppm
            .store(300_000, Ordering::Relaxed);
        let (mut lost, mut total) = (0u64, 0u64);
        for round in 0..200u64 {
            let frames: Vec<(u64, u16)> = (0..32u64)
                .map(|i| (i * 2048, u16::try_from((i + round) % 2).unwrap()))
                .collect();
            let mut b = batch(&frames);
            s.process(0, &mut a, &mut b);
            total += 32;
            lost += b
                .as_slice()
                .iter()
                .filter(|p| p.verdict == EngineVerdict::Drop(DropReason::Other))
                .count() as u64;
        }
        let c = s.counters();
        assert_eq!(c[0].impaired + c[1].impaired, lost);
        assert!(c[0].impaired > 0 && c[1].impaired > 0);
        // 6400 frames at p = 0.3: sigma = 37; within 5 sigma.
        let expect = total as f64 * 0.3;
        assert!(
            (lost as f64 - expect).abs() < 5.0 * 36.7,
            "lost {lost} of {total}"
        );
        // Off again: nothing more is lost.
        s.impairment().extra_loss_ppm.store(0, Ordering::Relaxed);
        let mut b = batch(&[(0, 0), (2048, 1)]);
        s.process(0, &mut a, &mut b);
        assert!(
            b.as_slice()
                .iter()
                .all(|p| p.verdict != EngineVerdict::Drop(DropReason::Other))
        );
    }

    #[test]
    fn poll_fills_at_most_one_batch() {
        let mut a = Arena::new(256, 2048, 256, false).unwrap();
        let delay = DirectionConfig {
            delay_ns: 5,
            ..DirectionConfig::default()
        };
        let mut s = stage(delay.clone(), delay, 200);
        for port in [0u16, 1] {
            for chunk in 0..2u64 {
                let frames: Vec<(u64, u16)> = (0..50u64)
                    .map(|i| ((chunk * 50 + i + u64::from(port) * 100) * 2048, port))
                    .collect();
                let mut b = batch(&frames);
                s.process(0, &mut a, &mut b);
            }
        }
        let mut out = Batch::new();
        s.poll(100, &mut a, &mut out);
        assert_eq!(out.len(), mongate_dataplane::engine::BATCH_SIZE);
        // Both directions got a share.
        assert_eq!(s.held(), [100 - 32, 100 - 32]);
    }

    #[test]
    fn config_checks() {
        let mut c = BridgeConfig::new("x", "x", DirectionConfig::default());
        assert!(matches!(c.validate(), Err(BridgeError::SameInterface(_))));
        c.b = "y".into();
        assert!(c.validate().is_ok());
        c.frames = 10;
        assert!(matches!(c.validate(), Err(BridgeError::Frames(10))));
        c.frames = 16384;
        c.ba.queue_pkts = 0;
        assert!(matches!(c.validate(), Err(BridgeError::BtoA(_))));
    }
}
