use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use crate::bpf::{XdpAttachment, XdpFilter, XdpMode};
use crate::engine::{Arena, FramePool, Port};
use crate::forward::{DropAll, ForwardRule, L3Forward};
use crate::stats::{StatsRegion, WorkerCounters, WorkerSnapshot, stats_path};
use crate::worker::{IdlePolicy, Worker, pin_to_core};

/// Which pipeline the forwarder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// IP forwarding with static next hops.
    Forward,
    /// Drop everything (rx-drop benchmark).
    Drop,
}

/// An AF_XDP forwarder between two interfaces.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Ingress interface.
    pub input: String,
    /// Egress interface.
    pub output: String,
    /// Queues 0..queues, one worker each.
    pub queues: u32,
    /// Cores to pin workers to (cycled); empty: no pinning.
    pub cores: Vec<usize>,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// AF_XDP binding.
    pub bind: BindMode,
    /// Next hop MAC on the egress side.
    pub next_hop_mac: [u8; 6],
    /// Forward egress -> ingress too, to this MAC.
    pub reverse_next_hop_mac: Option<[u8; 6]>,
    /// Largest IP packet.
    pub mtu: u32,
    /// Frames per worker.
    pub frames: u32,
    /// Instance name (stats file).
    pub name: String,
    /// Idle policy of the workers.
    pub idle: IdlePolicy,
    /// Pipeline.
    pub stage: StageKind,
    /// AF_XDP preferred busy polling budget on the ingress sockets (0: off).
    pub busy_poll_budget: u16,
    /// Slots of each socket's rx and tx rings (a power of two): what can
    /// queue in front of a worker, so the latency of a saturated one
    /// (4096 packets: 12 ms at 0.33 Mpps).
    pub ring_size: u32,
}

impl ForwardConfig {
    /// Defaults: 1 queue, auto modes, MTU 1500, 16384 frames.
    pub fn new(input: &str, output: &str, next_hop_mac: [u8; 6]) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            queues: 1,
            cores: Vec::new(),
            xdp_mode: XdpMode::Auto,
            bind: BindMode::Auto,
            next_hop_mac,
            reverse_next_hop_mac: None,
            mtu: 1500,
            frames: 16384,
            name: "dataplane".into(),
            idle: IdlePolicy::default(),
            stage: StageKind::Forward,
            busy_poll_budget: 0,
            ring_size: 4096,
        }
    }
}

/// A running dataplane: worker threads, XDP attachments, stats.
pub struct RunningDataplane {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<StatsRegion>,
    /// Human description of every port.
    pub ports: Vec<String>,
    /// XDP mode in use (None: no XDP, e.g. io_uring ports).
    pub xdp_mode: Option<XdpMode>,
    _xdp: Vec<XdpAttachment>,
    /// Shared-memory files and other state kept alive while running.
    kept: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// A site gateway's reloads (SIGHUP); `None` for the other applications.
    pub reloader: Option<super::reload::GatewayReloader>,
}

impl RunningDataplane {
    pub(super) fn from_parts(
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
        stats: Arc<StatsRegion>,
        ports: Vec<String>,
        xdp_mode: Option<XdpMode>,
        xdp: Vec<XdpAttachment>,
    ) -> Self {
        Self {
            stop,
            threads,
            stats,
            ports,
            xdp_mode,
            _xdp: xdp,
            kept: Vec::new(),
            reloader: None,
        }
    }

    /// Keeps `v` alive until the dataplane is stopped (after the workers).
    pub fn keep(&mut self, v: Box<dyn std::any::Any + Send + Sync>) {
        self.kept.push(v);
    }

    /// Current counters of every worker.
    pub fn snapshot(&self) -> Vec<WorkerSnapshot> {
        self.stats.snapshot()
    }
    /// Whether every worker thread is still running.
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }
    /// Stops the workers, joins them, detaches XDP; returns final counters.
    pub fn stop(mut self) -> Vec<WorkerSnapshot> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stats.snapshot()
    }
}

impl Drop for RunningDataplane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn iface_mac(ifname: &str) -> anyhow::Result<[u8; 6]> {
    Ok(super::netinfo::iface_mac(ifname)?.0)
}

/// Attaches XDP, opens the sockets, starts one pinned worker per queue.
pub fn start_forward(c: &ForwardConfig) -> anyhow::Result<RunningDataplane> {
    if c.queues == 0 || c.queues > 64 {
        anyhow::bail!("queues must be 1..=64 (got {})", c.queues);
    }
    let in_mac = iface_mac(&c.input)?;
    let out_mac = iface_mac(&c.output)?;
    let xdp_in = XdpAttachment::attach(&c.input, &XdpFilter::lan(&[], &[]), c.queues, c.xdp_mode)?;
    let xdp_out = match c.reverse_next_hop_mac {
        Some(_) => Some(XdpAttachment::attach(
            &c.output,
            &XdpFilter::lan(&[], &[]),
            c.queues,
            c.xdp_mode,
        )?),
        None => None,
    };
    let stats = Arc::new(StatsRegion::create(
        &stats_path(&c.name),
        usize::try_from(c.queues)?,
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut names = Vec::new();
    // Every worker is built (sockets bound) before any thread starts, so a
    // failure on a later queue leaves nothing running.
    type Run = Box<dyn FnOnce(&AtomicBool, Option<&WorkerCounters>) + Send>;
    let mut runs: Vec<(u32, Option<usize>, Run)> = Vec::new();
    for q in 0..c.queues {
        let arena = Arena::new(c.frames, 2048, 256, true)?;
        let mut pool = FramePool::new(&arena);
        let mut cfg_in = AfXdpConfig::new(&c.input, q);
        cfg_in.bind = c.bind;
        cfg_in.busy_poll_budget = c.busy_poll_budget;
        cfg_in.ring_size = c.ring_size;
        let mut cfg_out = AfXdpConfig::new(&c.output, q);
        cfg_out.bind = c.bind;
        cfg_out.ring_size = c.ring_size;
        let mut p_in = AfXdpPort::open(&cfg_in, 0, &arena, None, Some(&xdp_in))?;
        let mut p_out = AfXdpPort::open(&cfg_out, 1, &arena, Some(&p_in), xdp_out.as_ref())?;
        // Receive buffers: half the frames; a transmit-only egress keeps none.
        let half = (c.frames / 2).min(cfg_in.fill_size);
        p_in.set_fill_target(if xdp_out.is_some() { half / 2 } else { half });
        p_out.set_fill_target(if xdp_out.is_some() { half / 2 } else { 0 });
        names.push(p_in.name().to_string());
        names.push(p_out.name().to_string());
        // Hand the kernel its receive buffers before traffic starts.
        p_in.maintain(&mut pool);
        p_out.maintain(&mut pool);
        // The worker is built on its own thread (ports need not be Send);
        // the sockets, UMEM and pool move there.
        let (p_in, p_out): (Box<dyn Port + Send>, Box<dyn Port + Send>) =
            (Box::new(p_in), Box::new(p_out));
        let idle = c.idle;
        let run: Run = match c.stage {
            StageKind::Drop => Box::new(move |s, k| {
                let ports: Vec<Box<dyn Port>> = vec![p_in, p_out];
                Worker::new(arena, pool, ports, DropAll, idle).run(s, k)
            }),
            StageKind::Forward => {
                let mut stage = L3Forward::new(c.mtu).with_rule(
                    0,
                    ForwardRule {
                        out_port: 1,
                        src_mac: out_mac,
                        dst_mac: c.next_hop_mac,
                    },
                );
                if let Some(rev) = c.reverse_next_hop_mac {
                    stage = stage.with_rule(
                        1,
                        ForwardRule {
                            out_port: 0,
                            src_mac: in_mac,
                            dst_mac: rev,
                        },
                    );
                }
                Box::new(move |s, k| {
                    let ports: Vec<Box<dyn Port>> = vec![p_in, p_out];
                    Worker::new(arena, pool, ports, stage, idle).run(s, k)
                })
            }
        };
        let core =
            (!c.cores.is_empty()).then(|| c.cores[usize::try_from(q).unwrap_or(0) % c.cores.len()]);
        runs.push((q, core, run));
    }
    for (q, core, run) in runs {
        let stop_w = stop.clone();
        let stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("mg-worker-{q}"))
            .spawn(move || {
                if let Some(core) = core
                    && !pin_to_core(core)
                {
                    tracing::warn!(worker = q, core, "could not pin to its core");
                }
                run(&stop_w, stats.worker(usize::try_from(q).unwrap_or(0)));
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e.into());
            }
        }
    }
    let mut xdp = vec![xdp_in];
    xdp.extend(xdp_out);
    Ok(RunningDataplane {
        stop,
        threads,
        stats,
        ports: names,
        xdp_mode: Some(xdp[0].mode()),
        _xdp: xdp,
        kept: Vec::new(),
        reloader: None,
    })
}
