//! `mongate-bench pipeline`: the overlay gateway's whole per-packet work
//! without I/O, at scale.
//!
//! Two real [`Gateway`] stages, site A (origin) and site C (destination),
//! each with its own arena and frame pool, wired back to back in memory as
//! `dataplane/tests/overlay_pipeline.rs` wires its triangle: batches of
//! synthetic UDP frames, each from one of `sessions` 5-tuples drawn at
//! random, enter A's LAN side (parse, source checks, classify, admit,
//! enqueue in the flow's Poisson pacer); A's `poll` releases them (timers,
//! pacing wheel, MONtra send bookkeeping, GENEVE encapsulation); C's WAN side
//! takes them at once (decapsulate, validate, deliver, ack aggregation); C's
//! `poll` emits its acks and A's WAN side takes them (ack tracker, MONtra
//! controller). The clock is simulated: `batch` packets per `batch` us
//! (1 Mpps offered), whatever the machine's speed.
//!
//! `flows` planned flows A->C, 8 per class, each class one destination host
//! of C; every flow is planned 4x its share of the offered load, so the
//! pacers hold packets only for their Poisson gaps. Every session is admitted
//! in a warm-up pass (one packet each, not measured) before the measured
//! packets. Costs are wall-clock ns per offered packet of each call into the
//! stages ([`Stages`]); under `valgrind --tool=callgrind
//! --toggle-collect='mongate_bench::pipeline::measured'` only the measured
//! packets count (docs/benchmarks.md).

use std::time::Instant;

use mongate_dataplane::config::{Config, Prefix, Rule, TrafficClass};
use mongate_dataplane::engine::{Arena, Batch, FramePool, Packet, Stage as _, Verdict};
use mongate_dataplane::overlay::{Gateway, Settings, wire_flow_id};
use mongate_dataplane::plan::{PlanShape, PlanTable};
use mongate_dataplane::sys::Rng;
use mongate_dataplane::wire::ethernet::MacAddr;

/// Planned flows per traffic class (more beyond 2^19 flows: each class has
/// its own host in C's /16, see [`flows_per_class`]).
pub const FLOWS_PER_CLASS: u32 = 8;
/// Most planned flows of a run (a gateway holds up to
/// `classify::MAX_FLOWS`; each flow here costs about 2 KB at each of the two
/// gateways, so this bounds the run's memory to a few GB).
pub const MAX_FLOWS: u32 = 1 << 22;
/// Most sessions (the classifier's table is sized at twice this).
pub const MAX_SESSIONS: u32 = 1 << 24;
/// Largest batch (the engine's batch size).
pub const MAX_BATCH: usize = mongate_dataplane::engine::BATCH_SIZE;

const LAN: u16 = 0;
const WAN: u16 = 1;
const FRAME: u32 = 2048;
const HEADROOM: u32 = 256;
/// Frames of each site's arena: at least this many ...
const FRAMES: u32 = 8192;

/// ... or one per flow: every flow is planned at 4x its share of the
/// offered load, a Poisson pacer at 4x its arrivals (an M/M/1 queue at load
/// 1/4) holds a third of a packet on average, so a site of many slow flows
/// holds about `flows / 3` packets in its pacing queues.
fn frames_for(flows: u32) -> u32 {
    FRAMES.max(flows.next_power_of_two())
}
/// LAN hosts of site A the sessions come from.
const HOSTS: u32 = 4096;
/// Inner frame length (Ethernet + IPv4 + UDP + 22 bytes), 64 B on the wire with FCS.
const FRAME_LEN: usize = 60;

/// Parameters of a pipeline benchmark.
#[derive(Clone, Debug)]
pub struct PipelineBench {
    /// Planned flows A->C (1..=[`MAX_FLOWS`]).
    pub flows: u32,
    /// Distinct 5-tuples (1..=[`MAX_SESSIONS`]).
    pub sessions: u32,
    /// Measured packets.
    pub packets: u64,
    /// Packets per batch (1..=[`MAX_BATCH`]).
    pub batch: usize,
    /// Seed of the session draw and of the gateways.
    pub seed: u64,
}

impl Default for PipelineBench {
    fn default() -> Self {
        Self {
            flows: 1000,
            sessions: 10_000,
            packets: 2_000_000,
            batch: 32,
            seed: 1,
        }
    }
}

/// Wall-clock ns per offered packet of each call into the two stages.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stages {
    /// A, `process` on the LAN batch: parse, source checks, classify
    /// (session table), admit, enqueue in the pacer.
    pub lan_classify_enqueue: f64,
    /// A, `poll`: timers, pacing wheel release, MONtra send bookkeeping,
    /// GENEVE encapsulation.
    pub lan_pace_encap: f64,
    /// A, `process` on C's acks: ack tracker, MONtra controller.
    pub lan_acks_in: f64,
    /// C, `process` on A's data: decapsulate, validate, deliver, ack aggregation.
    pub wan_decap_deliver: f64,
    /// C, `poll`: ack emission.
    pub wan_acks_out: f64,
}

/// Where every offered packet went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    /// Packets offered to A's LAN side (warm-up excluded).
    pub offered: u64,
    /// Data packets A encapsulated and sent toward C.
    pub sent: u64,
    /// Packets A dropped (any reason, counted by its verdict).
    pub dropped: u64,
    /// A's drops by reason.
    pub dropped_by_reason: std::collections::BTreeMap<String, u64>,
    /// Packets in A's pacing queues when the measurement started (warm-up's).
    pub held_at_start: u64,
    /// Packets still in A's pacing queues at the end.
    pub held: u64,
    /// Data packets C delivered to its LAN.
    pub delivered: u64,
    /// Packets C dropped.
    pub dropped_at_c: u64,
    /// Ack messages from C to A.
    pub acks: u64,
    /// Sessions admitted on a flow (warm-up included).
    pub admitted_sessions: u64,
    /// Compactions of A's and C's timer wheels (set-up and warm-up
    /// included): 0 when their chunk pools held every stale record.
    pub timer_compactions: u64,
}

/// The report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PipelineReport {
    /// Planned flows.
    pub flows: u32,
    /// Sessions.
    pub sessions: u32,
    /// Measured packets.
    pub packets: u64,
    /// Packets per batch.
    pub batch: usize,
    /// A's whole per-packet work: classify/enqueue + pace/encap + acks in.
    pub lan_to_wan_ns_per_packet: f64,
    /// C's whole per-packet work: decap/deliver + acks out.
    pub wan_to_lan_ns_per_packet: f64,
    /// Per stage, ns per offered packet.
    pub stages: Stages,
    /// Packet accounting.
    pub counts: Counts,
    /// Building the gateways and the warm-up, s.
    pub setup_seconds: f64,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A parameter out of range.
    #[error("{0}")]
    Param(String),
    /// The gateway refused the generated configuration.
    #[error("gateway: {0}")]
    Gateway(String),
}

/// Parameters out of range are refused with the reason, not clamped.
fn check(b: &PipelineBench) -> Result<(), PipelineError> {
    let p = |s: String| Err(PipelineError::Param(s));
    if !(1..=MAX_FLOWS).contains(&b.flows) {
        return p(format!(
            "--flows must be in 1..={MAX_FLOWS} (each flow takes about 2 KB at each \
             of the benchmark's two gateways), got {}",
            b.flows
        ));
    }
    if !(1..=MAX_SESSIONS).contains(&b.sessions) {
        return p(format!(
            "--sessions must be in 1..={MAX_SESSIONS}, got {}",
            b.sessions
        ));
    }
    if !(1..=MAX_BATCH).contains(&b.batch) {
        return p(format!(
            "--batch must be in 1..={MAX_BATCH}, got {}",
            b.batch
        ));
    }
    if b.packets == 0 || b.packets > 1 << 40 {
        return p(format!("--packets must be in 1..=2^40, got {}", b.packets));
    }
    Ok(())
}

/// Flows per class: [`FLOWS_PER_CLASS`], or as many as keep the classes
/// within C's 65 536 host addresses (one per class, `dst_of`).
fn flows_per_class(flows: u32) -> u32 {
    FLOWS_PER_CLASS.max(flows.div_ceil(1 << 16))
}

/// Classes of the benchmark ([`flows_per_class`] flows each, the last one
/// fewer).
fn classes_of(flows: u32) -> u32 {
    flows.div_ceil(flows_per_class(flows))
}

/// C's LAN host of class `k` (198.19.0.0/16; `k` < 65536).
fn dst_of(k: u32) -> [u8; 4] {
    let [_, _, a, b] = k.to_be_bytes();
    [198, 19, a, b]
}

/// A's LAN host `h` (198.18.1.0 + h, `h` < [`HOSTS`]).
fn src_of(h: u32) -> [u8; 4] {
    let [_, _, a, b] = (256 + h).to_be_bytes();
    [198, 18, a, b]
}

const SITE_A: &str = "198.18.0.0/17";
const SITE_C: &str = "198.19.0.0/16";
const UPLINK_A: &str = "198.18.200.1";
const UPLINK_C: &str = "198.18.200.3";

/// Site `me`'s configuration (A or C): the two sites, `classes` classes of
/// [`FLOWS_PER_CLASS`] flows each (`flows` in all), every flow A->C, and the
/// plan admitting every one of `sessions` sessions, each flow planned at 4x
/// its share of the offered 1 Mpps.
fn config(me: &str, flows: u32, sessions: u32) -> Result<Config, PipelineError> {
    let (own, peer, peer_prefix, local, remote) = if me == "A" {
        ("A", "C", SITE_C, UPLINK_A, UPLINK_C)
    } else {
        ("C", "A", SITE_A, UPLINK_C, UPLINK_A)
    };
    let own_prefix = if me == "A" { SITE_A } else { SITE_C };
    let t = format!(
        r#"
[site]
name = "{own}"
vni = 4242
lan_interface = "lan0"
lan_prefixes = ["{own_prefix}"]
session_idle_timeout_seconds = 3600

[security]
mode = "off"

[[uplinks]]
name = "isp1"
interface = "up0"
local_address = "{local}"
capacity_mbps = 100000
gateway_mac = "02:00:00:00:00:fe"
backend = "af_xdp"

[[peers]]
name = "{peer}"
prefixes = ["{peer_prefix}"]
gateways = ["{remote}"]

[[classes]]
id = "k0"
source = "A"
destination = "C"
type = "video"
overflow = "drop"

[[classes.rules]]
protocol = "udp"
dst_prefixes = ["198.19.0.0/32"]

[[flows]]
id = "f0"
class = "k0"
route = ["A", "C"]
"#
    );
    let mut cfg = Config::from_toml_str(&t, "pipeline.toml")
        .map_err(|e| PipelineError::Gateway(e.to_string()))?;
    let class0 = cfg.classes[0].clone();
    let flow0 = cfg.flows[0].clone();
    let classes = classes_of(flows);
    let fpc = flows_per_class(flows);
    cfg.classes = (0..classes)
        .map(|k| {
            let [a, b, c, d] = dst_of(k);
            let prefix: Prefix = format!("{a}.{b}.{c}.{d}/32")
                .parse()
                .map_err(|e| PipelineError::Gateway(format!("{e:?}")))?;
            Ok(TrafficClass {
                id: format!("k{k}"),
                rules: vec![Rule {
                    dst_prefixes: vec![prefix],
                    ..class0.rules[0].clone()
                }],
                ..class0.clone()
            })
        })
        .collect::<Result<_, PipelineError>>()?;
    // Flow ids travel as a 32-bit hash (`wire_flow_id`) and a gateway
    // refuses two flows whose hashes collide (at a million flows a hundred
    // pairs would): a colliding name gets a suffix until its hash is new.
    let mut used = std::collections::HashSet::with_capacity(flows as usize);
    cfg.flows = (0..flows)
        .map(|f| {
            let mut fl = flow0.clone();
            fl.id = format!("f{f}");
            let mut k = 0u32;
            while !used.insert(wire_flow_id(&fl.id)) {
                k += 1;
                fl.id = format!("f{f}-{k}");
            }
            fl.class = format!("k{}", f / fpc);
            fl
        })
        .collect();
    let mut plan = PlanTable::empty(&PlanShape::from_config(&cfg));
    plan.epoch = 1;
    let per_class = sessions.div_ceil(classes);
    plan.sessions.fill(per_class);
    // Flow f of a class of n flows carries 1/n of the class's sessions,
    // 1/classes of all: 1e6 / (classes * n) pps. The plan gives a rate per
    // admitted session (the gateway multiplies by the class's sessions),
    // in Mbit/s of FRAME_LEN-byte packets, 4x that share.
    for f in 0..flows {
        let n = fpc.min(flows - f / fpc * fpc);
        let flow_pps = 4.0 * 1e6 / f64::from(classes * n);
        let mbps = flow_pps * FRAME_LEN as f64 * 8.0 / 1e6 / f64::from(per_class.max(1));
        let i = f as usize;
        plan.rate_mbps[i] = mbps;
        plan.weight[i] = mbps * 0.02;
    }
    cfg.plan = Some(plan);
    Ok(cfg)
}

/// One site: its arena, frame pool and gateway.
struct Site {
    arena: Arena,
    pool: FramePool,
    gw: Gateway,
    /// Reasons of the drops `settle` saw since the caller last took them.
    last_drops: Vec<mongate_dataplane::engine::DropReason>,
}

impl Site {
    fn new(cfg: &Config, i: u8, sessions: u32, seed: u64) -> Result<Self, PipelineError> {
        let frames = frames_for(u32::try_from(cfg.flows.len()).unwrap_or(u32::MAX));
        let arena = Arena::new(frames, FRAME, HEADROOM, false)
            .map_err(|e| PipelineError::Gateway(format!("arena: {e}")))?;
        let mut arena = arena;
        // Touch every frame now: a page's first write faults (the kernel
        // zeroes it), which would be counted in the measured packets' time
        // when the pacing queues first reach that many frames.
        for f in 0..frames {
            if let Some(b) = arena.get_mut(u64::from(f) * u64::from(FRAME), 1) {
                b[0] = 0;
            }
        }
        let mut pool = FramePool::new(&arena);
        let reserve = (0..64).filter_map(|_| pool.alloc()).collect();
        let mut s = Settings {
            lan_port: LAN,
            uplink_ports: vec![WAN],
            lan_mac: MacAddr([0x02, 0x10, 0, 0, 0, i]),
            uplink_macs: vec![MacAddr([0x02, 0x20, 0, 0, 0, i])],
            queue_capacity: 16,
            rate_unit_bytes: u32::try_from(FRAME_LEN).unwrap_or(u32::MAX),
            seed: seed.wrapping_add(u64::from(i)),
            ..Settings::default()
        };
        s.classifier.max_sessions = usize::try_from(sessions)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .next_power_of_two();
        s.classifier.hash_seed ^= seed;
        let gw =
            Gateway::new(cfg, s, reserve, 0).map_err(|e| PipelineError::Gateway(e.to_string()))?;
        Ok(Self {
            arena,
            pool,
            gw,
            last_drops: Vec::with_capacity(4 * MAX_BATCH),
        })
    }

    /// Copies `frames` into fresh frames arriving on `port`.
    fn load(&mut self, frames: &[Vec<u8>], port: u16, now: u64, b: &mut Batch) {
        b.clear();
        for f in frames {
            if let Some(base) = self.pool.alloc() {
                let addr = base + u64::from(HEADROOM);
                let len = u32::try_from(f.len()).unwrap_or(0);
                if let Some(dst) = self.arena.get_mut(addr, len) {
                    dst.copy_from_slice(f);
                    b.push(Packet::new(addr, len, port, now));
                } else {
                    self.pool.free(base);
                }
            }
        }
    }

    /// Frees every frame the batch gave back; copies `Tx(WAN)` frames to
    /// `wan`. Returns (Tx(LAN), drops).
    fn settle(&mut self, b: &Batch, wan: &mut Frames) -> (u64, u64) {
        let (mut lan, mut drops) = (0, 0);
        for p in b.as_slice() {
            match p.verdict {
                Verdict::Held | Verdict::Pending => continue,
                Verdict::Tx(WAN) => {
                    if let Some(f) = self.arena.packet(p) {
                        wan.push(f);
                    }
                }
                Verdict::Tx(_) => lan += 1,
                Verdict::Drop(r) => {
                    drops += 1;
                    self.last_drops.push(r);
                }
            }
            self.pool.free(p.addr);
        }
        (lan, drops)
    }
}

/// Writes session `s`'s frame (UDP, 64 B on the wire) into `f`.
fn session_frame(s: u32, classes: u32, f: &mut Vec<u8>) {
    let k = s % classes;
    let rest = s / classes;
    let h = rest % HOSTS;
    let sport = u16::try_from(1024 + rest / HOSTS).unwrap_or(u16::MAX);
    let src = src_of(h);
    let dst = dst_of(k);
    f.clear();
    f.extend_from_slice(&[0x02, 0x10, 0, 0, 0, 0]); // A's gateway (lan_mac)
    let [_, _, h1, h2] = h.to_be_bytes();
    f.extend_from_slice(&[0x02, 0xAA, 0, 0, h1, h2]); // one MAC per host
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(FRAME_LEN - 14).unwrap_or(0);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let csum = !u16::try_from(sum).unwrap_or(u16::MAX);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
    f.resize(FRAME_LEN, 0x5A);
}

/// The two sites, their clock and the run's buffers.
struct Pair {
    a: Site,
    c: Site,
    now: u64,
    classes: u32,
    rng: Rng,
    lan: Vec<Vec<u8>>,
    to_c: Frames,
    to_a: Frames,
    /// A's frames toward the WAN while it takes acks (none: thrown away).
    discard: Frames,
    b: Batch,
    out: Batch,
}

/// Frames on their way between the two sites. The buffers are kept from
/// batch to batch, so the harness allocates nothing while it measures
/// (a fresh `Vec` per frame was 7 % of the run's instructions in callgrind,
/// and its heap traffic went through the caches the stages use).
#[derive(Default)]
struct Frames {
    bufs: Vec<Vec<u8>>,
    len: usize,
}

impl Frames {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, f: &[u8]) {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(2048));
        }
        if let Some(b) = self.bufs.get_mut(self.len) {
            b.clear();
            b.extend_from_slice(f);
            self.len += 1;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[Vec<u8>] {
        self.bufs.get(..self.len).unwrap_or(&[])
    }
}

/// Accumulated wall-clock ns per stage.
#[derive(Default)]
struct Clock {
    t: [u128; 5],
}

impl Pair {
    /// One batch of `n` packets: session `pick(rng)` each, through A, to C,
    /// C's acks back to A. The clock advances 1 us per packet.
    fn round(
        &mut self,
        n: usize,
        mut pick: impl FnMut(&mut Rng) -> u32,
        clk: &mut Clock,
        k: &mut Counts,
    ) {
        for i in 0..n {
            let s = pick(&mut self.rng);
            session_frame(s, self.classes, &mut self.lan[i]);
        }
        let now = self.now;
        let mut b = std::mem::take(&mut self.b);
        self.a.load(&self.lan[..n], LAN, now, &mut b);
        k.offered += b.len() as u64;
        let t0 = Instant::now();
        self.a.gw.process(now, &mut self.a.arena, &mut b);
        clk.t[0] += t0.elapsed().as_nanos();
        self.to_c.clear();
        k.dropped += self.a.settle(&b, &mut self.to_c).1;
        self.now += 1000 * n as u64;
        let now = self.now;
        loop {
            self.out.clear();
            let t0 = Instant::now();
            self.a.gw.poll(now, &mut self.a.arena, &mut self.out);
            clk.t[1] += t0.elapsed().as_nanos();
            k.dropped += self.a.settle(&self.out, &mut self.to_c).1;
            if self.out.is_empty() {
                break;
            }
        }
        k.sent += self.to_c.len() as u64;
        // C: A's data, in batches of the engine's size.
        self.to_a.clear();
        for chunk in self.to_c.as_slice().chunks(MAX_BATCH) {
            self.c.load(chunk, WAN, now, &mut b);
            let t0 = Instant::now();
            self.c.gw.process(now, &mut self.c.arena, &mut b);
            clk.t[3] += t0.elapsed().as_nanos();
            let (lan, drops) = self.c.settle(&b, &mut self.to_a);
            k.delivered += lan;
            k.dropped_at_c += drops;
        }
        self.c.gw.replenish(&mut self.c.pool);
        loop {
            self.out.clear();
            let t0 = Instant::now();
            self.c.gw.poll(now, &mut self.c.arena, &mut self.out);
            clk.t[4] += t0.elapsed().as_nanos();
            self.c.settle(&self.out, &mut self.to_a);
            if self.out.is_empty() {
                break;
            }
        }
        k.acks += self.to_a.len() as u64;
        for chunk in self.to_a.as_slice().chunks(MAX_BATCH) {
            self.a.load(chunk, WAN, now, &mut b);
            let t0 = Instant::now();
            self.a.gw.process(now, &mut self.a.arena, &mut b);
            clk.t[2] += t0.elapsed().as_nanos();
            let before = self.a.last_drops.len();
            self.discard.clear();
            self.a.settle(&b, &mut self.discard);
            // Ack frames beyond the reserve (oam_consumed) are not data drops.
            self.a.last_drops.truncate(before);
        }
        self.a.gw.replenish(&mut self.a.pool);
        for r in self.a.last_drops.drain(..) {
            *k.dropped_by_reason.entry(format!("{r:?}")).or_default() += 1;
        }
        self.c.last_drops.clear();
        self.b = b;
    }
}

/// The measured packets (a function of its own so that callgrind can
/// count only them: `--toggle-collect='mongate_bench::pipeline::measured'`).
#[inline(never)]
fn measured(p: &mut Pair, bench: &PipelineBench, clk: &mut Clock, k: &mut Counts) {
    let sessions = u64::from(bench.sessions);
    let mut left = bench.packets;
    while left > 0 {
        let n = usize::try_from(left.min(bench.batch as u64)).unwrap_or(bench.batch);
        p.round(
            n,
            |rng| u32::try_from(rng.below(sessions)).unwrap_or(0),
            clk,
            k,
        );
        left -= n as u64;
    }
}

/// Runs the benchmark.
pub fn run_pipeline(bench: &PipelineBench) -> Result<PipelineReport, PipelineError> {
    check(bench)?;
    let t_setup = Instant::now();
    let classes = classes_of(bench.flows);
    let a = Site::new(
        &config("A", bench.flows, bench.sessions)?,
        0,
        bench.sessions,
        bench.seed,
    )?;
    let c = Site::new(
        &config("C", bench.flows, bench.sessions)?,
        2,
        bench.sessions,
        bench.seed,
    )?;
    let mut p = Pair {
        a,
        c,
        now: 1_000_000,
        classes,
        rng: Rng::new(bench.seed),
        lan: (0..MAX_BATCH)
            .map(|_| Vec::with_capacity(FRAME_LEN))
            .collect(),
        to_c: Frames::default(),
        to_a: Frames::default(),
        discard: Frames::default(),
        b: Batch::new(),
        out: Batch::new(),
    };
    // Warm-up: one packet per session, in order (admission), not counted.
    let mut warm = Counts::default();
    let mut clk = Clock::default();
    let mut next = 0u32;
    while next < bench.sessions {
        let n = usize::try_from((bench.sessions - next).min(32)).unwrap_or(32);
        p.round(
            n,
            |_| {
                next += 1;
                next - 1
            },
            &mut clk,
            &mut warm,
        );
    }
    let setup_seconds = t_setup.elapsed().as_secs_f64();
    let held = |g: &Gateway| -> u64 {
        (0..g.pacing().flows())
            .map(|q| u64::from(g.pacing().queue_len(q)))
            .sum()
    };
    let mut clk = Clock::default();
    let mut k = Counts {
        held_at_start: held(&p.a.gw),
        ..Counts::default()
    };
    measured(&mut p, bench, &mut clk, &mut k);
    k.held = held(&p.a.gw);
    k.admitted_sessions = p.a.gw.classifier().stats().admitted;
    k.timer_compactions = p.a.gw.timer_compactions() + p.c.gw.timer_compactions();
    let per = |t: u128| t as f64 / k.offered.max(1) as f64;
    let stages = Stages {
        lan_classify_enqueue: per(clk.t[0]),
        lan_pace_encap: per(clk.t[1]),
        lan_acks_in: per(clk.t[2]),
        wan_decap_deliver: per(clk.t[3]),
        wan_acks_out: per(clk.t[4]),
    };
    Ok(PipelineReport {
        flows: bench.flows,
        sessions: bench.sessions,
        packets: bench.packets,
        batch: bench.batch,
        lan_to_wan_ns_per_packet: stages.lan_classify_enqueue
            + stages.lan_pace_encap
            + stages.lan_acks_in,
        wan_to_lan_ns_per_packet: stages.wan_decap_deliver + stages.wan_acks_out,
        stages,
        counts: k,
        setup_seconds,
    })
}

/// A human-readable report.
pub fn table(r: &PipelineReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pipeline: {} flows, {} sessions, {} packets in batches of {} (setup {:.1} s)",
        r.flows, r.sessions, r.packets, r.batch, r.setup_seconds
    );
    let st = &r.stages;
    let _ = writeln!(s, "LAN->WAN {:7.1} ns/pkt", r.lan_to_wan_ns_per_packet);
    let _ = writeln!(s, "  classify+enqueue {:7.1}", st.lan_classify_enqueue);
    let _ = writeln!(s, "  pace+encap       {:7.1}", st.lan_pace_encap);
    let _ = writeln!(s, "  acks in (MONtra) {:7.1}", st.lan_acks_in);
    let _ = writeln!(s, "WAN->LAN {:7.1} ns/pkt", r.wan_to_lan_ns_per_packet);
    let _ = writeln!(s, "  decap+deliver    {:7.1}", st.wan_decap_deliver);
    let _ = writeln!(s, "  acks out         {:7.1}", st.wan_acks_out);
    let k = &r.counts;
    let _ = writeln!(
        s,
        "offered {} (+{} held from the warm-up) sent {} dropped {} held {} delivered {} (dropped at C {}) acks {}",
        k.offered, k.held_at_start, k.sent, k.dropped, k.held, k.delivered, k.dropped_at_c, k.acks
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_parameters_are_refused_with_the_reason() {
        let b = PipelineBench {
            flows: MAX_FLOWS + 1,
            ..PipelineBench::default()
        };
        let e = run_pipeline(&b)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--flows") && e.contains("2 KB"), "{e}");
        for b in [
            PipelineBench {
                sessions: 0,
                ..PipelineBench::default()
            },
            PipelineBench {
                batch: 0,
                ..PipelineBench::default()
            },
            PipelineBench {
                packets: 0,
                ..PipelineBench::default()
            },
        ] {
            assert!(run_pipeline(&b).is_err());
        }
    }

    #[test]
    fn session_frames_are_distinct_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        let mut f = Vec::new();
        for s in 0..20_000 {
            session_frame(s, 7, &mut f);
            assert_eq!(f.len(), FRAME_LEN);
            let t = mongate_dataplane::classify::inner::parse(&f).expect("parses");
            assert!(
                seen.insert((t.tuple.src, t.tuple.dst, t.tuple.sport)),
                "session {s}"
            );
        }
    }
}
