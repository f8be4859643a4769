//! The traffic generator and sink on the engine's AF_XDP ports: one thread
//! drives both (generator and sink share a core in benchmarks), so the
//! device under test has the other core to itself.

use std::net::Ipv4Addr;
use std::time::Duration;

use mongate_dataplane::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use mongate_dataplane::bpf::{XdpAttachment, XdpFilter, XdpMode};
use mongate_dataplane::engine::{Arena, Batch, FramePool, Packet, Port, Verdict};
use mongate_dataplane::sys::Rng;
use mongate_dataplane::sys::clock::now_ns;

use crate::payload::{BENCH_PORT, FlowAddrs, SinkMatch, Stamp, build_frame, read_stamp, stamp};
use crate::sink::SinkStats;

/// Frames per generator or sink port: deep enough to ride out tens of
/// milliseconds without being scheduled.
const FRAMES: u32 = 32768;
/// Frame size of the generator (32768 x 2 KiB = 64 MiB).
const GEN_FRAME: u32 = 2048;
/// Frame size of the sink (32768 x 4 KiB = 128 MiB): AF_XDP copy mode
/// receives at most frame - 256 (headroom) - 256 (XDP headroom) bytes, and a
/// 1500-byte frame in a tunnel is longer than the 1536 a 2 KiB frame holds.
const SINK_FRAME: u32 = 4096;

/// One AF_XDP port with its own frames.
pub struct OwnedPort {
    port: AfXdpPort,
    pool: FramePool,
    arena: Arena,
}

impl OwnedPort {
    fn open(
        ifname: &str,
        queue: u32,
        xdp: Option<&XdpAttachment>,
        fill: u32,
        tx_skb_budget: u32,
    ) -> anyhow::Result<Self> {
        let frame = if xdp.is_some() { SINK_FRAME } else { GEN_FRAME };
        let arena = Arena::new(FRAMES, frame, 256, false)?;
        let mut pool = FramePool::new(&arena);
        let mut cfg = AfXdpConfig::new(ifname, queue);
        cfg.bind = BindMode::Auto;
        cfg.ring_size = 8192;
        cfg.fill_size = 16384;
        cfg.tx_skb_budget = tx_skb_budget;
        let mut port = AfXdpPort::open(&cfg, 0, &arena, None, xdp)?;
        port.set_fill_target(fill);
        port.maintain(&mut pool);
        Ok(Self { port, pool, arena })
    }
}

/// The generating side: transmit-only sockets, one per queue.
pub struct GenSide {
    ports: Vec<OwnedPort>,
}

/// The receiving side: an XDP program steering bench UDP to sockets, one per queue.
pub struct SinkSide {
    ports: Vec<OwnedPort>,
    _xdp: XdpAttachment,
}

impl GenSide {
    /// Opens transmit sockets on `ifname` queues `0..queues` (call from a
    /// thread inside the interface's namespace).
    pub fn open(ifname: &str, queues: u32) -> anyhow::Result<Self> {
        Self::open_queues(ifname, &(0..queues).collect::<Vec<_>>())
    }

    /// Opens transmit sockets on the given queues of `ifname`.
    pub fn open_queues(ifname: &str, queues: &[u32]) -> anyhow::Result<Self> {
        Self::open_queues_budget(ifname, queues, 0)
    }

    /// [`GenSide::open`] with the sockets' copy-mode send budget set to
    /// `tx_skb_budget` frames per `sendto` (`XDP_MAX_TX_SKB_BUDGET`; 0: the
    /// kernel's default of 32).
    pub fn open_budget(ifname: &str, queues: u32, tx_skb_budget: u32) -> anyhow::Result<Self> {
        Self::open_queues_budget(ifname, &(0..queues).collect::<Vec<_>>(), tx_skb_budget)
    }

    fn open_queues_budget(
        ifname: &str,
        queues: &[u32],
        tx_skb_budget: u32,
    ) -> anyhow::Result<Self> {
        let ports = queues
            .iter()
            .map(|&q| OwnedPort::open(ifname, q, None, 0, tx_skb_budget))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { ports })
    }
}

impl SinkSide {
    /// Attaches the steering program (`mode`) and opens receive sockets on
    /// `ifname` queues `0..queues` (from a thread inside its namespace).
    pub fn open(ifname: &str, queues: u32, mode: XdpMode) -> anyhow::Result<Self> {
        Self::open_ports(ifname, queues, mode, &[BENCH_PORT])
    }

    /// Like [`SinkSide::open`], steering UDP to `udp_ports` (e.g. GENEVE
    /// 6081 or VXLAN 4789 behind a gateway; see [`crate::payload::read_stamp`]).
    pub fn open_ports(
        ifname: &str,
        queues: u32,
        mode: XdpMode,
        udp_ports: &[u16],
    ) -> anyhow::Result<Self> {
        let xdp = XdpAttachment::attach(ifname, &XdpFilter::wan(udp_ports), queues, mode)?;
        let ports = (0..queues)
            .map(|q| OwnedPort::open(ifname, q, Some(&xdp), 16384, 0))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { ports, _xdp: xdp })
    }

    /// The kernel's drop counters summed over the sink's sockets: (frames
    /// dropped for lack of fill buffers or rx ring room, rx ring full events).
    pub fn kernel_drops(&self) -> (u64, u64) {
        self.ports
            .iter()
            .filter_map(|p| p.port.kernel_stats())
            .fold((0, 0), |(a, b), s| (a + s.rx_dropped, b + s.rx_ring_full))
    }
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Flow addresses; flow `f` leaves on queue `f % queues`, UDP source port `base + f`.
    pub addrs: FlowAddrs,
    /// Number of flows (1..=65535).
    pub flows: u16,
    /// Frame size incl. FCS, or several sizes cycled per packet (IMIX-like).
    pub sizes: Vec<u32>,
    /// Offered rate, packets/s in total; 0 = as fast as possible.
    pub rate_pps: f64,
    /// Poisson (exponential) gaps instead of constant ones.
    pub poisson: bool,
    /// Stop after this many packets.
    pub count: u64,
    /// Or after this long.
    pub duration: Duration,
    /// RNG seed (Poisson gaps).
    pub seed: u64,
    /// Print progress to stderr every second.
    pub progress: bool,
}

/// What one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    /// Packets the generator put on the wire.
    pub sent: u64,
    /// Packets the sink received.
    pub received: u64,
    /// sent - received (never negative).
    pub lost: u64,
    /// Loss ratio.
    pub loss: f64,
    /// Packets received out of order.
    pub reordered: u64,
    /// Frames the sink received that did not match what it counts.
    pub foreign: u64,
    /// Offered rate achieved by the generator (pps).
    pub tx_pps: f64,
    /// Receive rate at the sink (pps).
    pub rx_pps: f64,
    /// Receive rate in Gbit/s (frame bytes incl. FCS).
    pub rx_gbps: f64,
    /// One-way latency percentiles (µs).
    pub latency_us_p50: f64,
    /// 99th percentile.
    pub latency_us_p99: f64,
    /// Maximum.
    pub latency_us_max: f64,
    /// Received per sink queue.
    pub per_queue_rx: Vec<u64>,
}

/// Generates on `gen` and counts on `sink` until `cfg.count` packets or
/// `cfg.duration` have passed, then drains the sink (at most 500 ms without
/// a packet). Bounded in time: at most `duration + 2 s`.
pub fn run(
    gen_side: Option<&mut GenSide>,
    sink: Option<&mut SinkSide>,
    cfg: &GenConfig,
) -> RunReport {
    run_matching(gen_side, sink, cfg, SinkMatch::Stamp)
}

/// [`run`], the sink counting what `matching` says (bench stamps, or an
/// encrypted tunnel's packets, which carry no readable stamp: then no
/// latency and no reordering are measured).
pub fn run_matching(
    mut gen_side: Option<&mut GenSide>,
    mut sink: Option<&mut SinkSide>,
    cfg: &GenConfig,
    matching: SinkMatch,
) -> RunReport {
    let queues = gen_side.as_ref().map_or(1, |g| g.ports.len().max(1));
    let flows = usize::from(cfg.flows.max(1)).max(queues);
    let templates: Vec<Vec<Vec<u8>>> = (0..flows)
        .map(|f| {
            let mut a = cfg.addrs;
            a.src_port = cfg
                .addrs
                .src_port
                .wrapping_add(u16::try_from(f).unwrap_or(0));
            cfg.sizes.iter().map(|&s| build_frame(&a, s)).collect()
        })
        .collect();
    let mut seqs = vec![0u32; flows];
    let mut stats = SinkStats::new();
    let mut per_queue = vec![0u64; sink.as_ref().map_or(0, |s| s.ports.len())];
    let mut rng = Rng::new(cfg.seed);
    let start = now_ns();
    let end = start + u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX);
    let hard_end = end + 2_000_000_000;
    let mut next_departure = start as f64;
    let gap_ns = if cfg.rate_pps > 0.0 {
        1e9 / cfg.rate_pps
    } else {
        0.0
    };
    let (mut sent, mut port_rr, mut size_rr) = (0u64, 0usize, 0usize);
    let mut flow_k = vec![0usize; queues];
    let mut last_tx = start;
    let mut last_rx_wall = start;
    let mut next_progress = start + 1_000_000_000;
    let (mut prog_tx, mut prog_rx) = (0u64, 0u64);
    let mut batch = Batch::new();
    let mut rxb = Batch::new();
    let mut bytes_fcs = 0u64;
    loop {
        let now = now_ns();
        let generating = sent < cfg.count && now < end;
        if let (true, Some(gs)) = (generating, gen_side.as_deref_mut()) {
            // How many are due now.
            let mut due = if gap_ns == 0.0 {
                u64::MAX
            } else {
                let mut n = 0u64;
                while next_departure <= now as f64 && n < 256 {
                    n += 1;
                    next_departure += if cfg.poisson {
                        rng.exp_gap_ns(cfg.rate_pps) as f64
                    } else {
                        gap_ns
                    };
                }
                n
            };
            due = due.min(cfg.count - sent);
            for op in gs.ports.iter_mut() {
                op.port.maintain(&mut op.pool);
            }
            let mut idle_ports = 0;
            while due > 0 && idle_ports < queues {
                let q = port_rr % queues;
                port_rr = port_rr.wrapping_add(1);
                let op = &mut gs.ports[q];
                let room = u64::from(op.port.tx_room()).min(64).min(due);
                if room == 0 {
                    idle_ports += 1;
                    continue;
                }
                // Flows of queue q: q, q + queues, q + 2 queues, ...
                let per_q = (flows + queues - 1 - q) / queues;
                batch.clear();
                for _ in 0..room {
                    let f = q + (flow_k[q] % per_q.max(1)) * queues;
                    flow_k[q] = flow_k[q].wrapping_add(1);
                    let t = &templates[f.min(flows - 1)][size_rr % cfg.sizes.len().max(1)];
                    size_rr = size_rr.wrapping_add(1);
                    let Some(addr) = op.pool.alloc() else { break };
                    let addr = addr + u64::from(op.arena.headroom());
                    let len = u32::try_from(t.len()).unwrap_or(0);
                    let Some(buf) = op.arena.get_mut(addr, len) else {
                        op.pool.free(addr);
                        break;
                    };
                    buf.copy_from_slice(t);
                    stamp(
                        buf,
                        Stamp {
                            ts_ns: now_ns(),
                            seq: seqs[f],
                            flow: u16::try_from(f).unwrap_or(0),
                        },
                    );
                    seqs[f] = seqs[f].wrapping_add(1);
                    let mut p = Packet::new(addr, len, 0, 0);
                    p.verdict = Verdict::Tx(0);
                    batch.push(p);
                    bytes_fcs += u64::from(len) + 4;
                }
                let (s, _dropped) = op
                    .port
                    .send(&mut op.arena, &mut op.pool, batch.as_mut_slice());
                // Frames the port refused are ours to return.
                for p in batch.as_slice() {
                    if matches!(p.verdict, Verdict::Drop(_)) {
                        op.pool.free(p.addr);
                    }
                }
                sent += s as u64;
                due = due.saturating_sub(s as u64);
                if s > 0 {
                    last_tx = now_ns();
                    idle_ports = 0;
                } else {
                    idle_ports += 1;
                }
            }
        } else if let Some(gs) = gen_side.as_deref_mut() {
            for op in gs.ports.iter_mut() {
                op.port.maintain(&mut op.pool);
            }
        }
        // Sink.
        let mut got = 0;
        let counted_before = stats.packets;
        let sink_ports = match sink.as_deref_mut() {
            Some(s) => s.ports.as_mut_slice(),
            None => &mut [],
        };
        for (qi, op) in sink_ports.iter_mut().enumerate() {
            // Drain up to 16 batches per port per iteration: the sink must
            // outpace the generator it shares a thread with.
            for _ in 0..16 {
                op.port.maintain(&mut op.pool);
                rxb.clear();
                let n = op.port.recv(&mut op.arena, &mut op.pool, &mut rxb);
                got += n;
                per_queue[qi] += n as u64;
                for p in rxb.as_slice() {
                    if matching == SinkMatch::Stamp {
                        let st = op.arena.packet(p).and_then(read_stamp);
                        stats.record(st, p.len, p.rx_ns);
                    } else {
                        let ok = op.arena.packet(p).is_some_and(|f| matching.sealed(f));
                        stats.record_unstamped(ok, p.len, p.rx_ns);
                    }
                    op.pool.free(p.addr);
                }
                if n < rxb
                    .as_slice()
                    .len()
                    .max(mongate_dataplane::engine::BATCH_SIZE)
                {
                    break;
                }
            }
        }
        let now2 = now_ns();
        // The drain waits for counted packets only: a DUT's own traffic
        // (a gateway's probes, counted as foreign) must not hold it to the
        // hard end, nor stretch the interval a CPU reading spans.
        if got > 0 && stats.packets > counted_before {
            last_rx_wall = now2;
        }
        if cfg.progress && now2 >= next_progress {
            eprintln!(
                "  t={:>4.1}s  tx {:>7.3} Mpps  rx {:>7.3} Mpps",
                (now2 - start) as f64 / 1e9,
                (sent - prog_tx) as f64 / 1e6,
                (stats.packets - prog_rx) as f64 / 1e6
            );
            prog_tx = sent;
            prog_rx = stats.packets;
            next_progress += 1_000_000_000;
        }
        if !generating
            && (sink.is_none()
                || stats.packets >= sent
                || now2.saturating_sub(last_rx_wall.max(last_tx)) > 500_000_000
                || now2 > hard_end)
        {
            break;
        }
    }
    let tx_secs = (last_tx.saturating_sub(start)) as f64 / 1e9;
    let lost = sent.saturating_sub(stats.packets);
    let avg_frame = if sent > 0 {
        bytes_fcs as f64 / sent as f64
    } else {
        0.0
    };
    let q = |p: f64| stats.latency.value_at_quantile(p) as f64 / 1000.0;
    RunReport {
        sent,
        received: stats.packets,
        lost,
        loss: if sent > 0 {
            lost as f64 / sent as f64
        } else {
            0.0
        },
        reordered: stats.reordered,
        foreign: stats.foreign,
        tx_pps: if tx_secs > 0.0 {
            sent as f64 / tx_secs
        } else {
            0.0
        },
        rx_pps: stats.pps(),
        rx_gbps: stats.pps() * avg_frame * 8.0 / 1e9,
        latency_us_p50: q(0.5),
        latency_us_p99: q(0.99),
        latency_us_max: stats.latency.max() as f64 / 1000.0,
        per_queue_rx: per_queue,
    }
}

/// Default flow addresses for the forwarding topology: gen -> sink via the DUT.
pub fn forward_addrs(src_mac: [u8; 6], dut_mac: [u8; 6], dst_ip: Ipv4Addr) -> FlowAddrs {
    FlowAddrs {
        src_mac,
        dst_mac: dut_mac,
        src_ip: Ipv4Addr::new(198, 18, 0, 1),
        dst_ip,
        src_port: 10000,
        dst_port: BENCH_PORT,
    }
}
