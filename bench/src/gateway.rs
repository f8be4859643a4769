//! `mongate-bench gateway`: the full overlay gateway pipeline (classify,
//! enqueue, Poisson pacing, GENEVE encapsulation) next to bare AF_XDP L3
//! forwarding and next to a Linux kernel gateway doing the same job (IP
//! forwarding into a VXLAN device with an htb qdisc that classifies UDP into
//! a class far above the offered load), on the same `gen — dut — sink`
//! topology, in one run, as ratios.
//!
//! Where work runs (2 cores): the generator and the sink share `gen_core`;
//! the DUT gets `dut_core`. veth delivers a packet in the sender's context,
//! so the DUT's receive work is steered onto `dut_core` explicitly, as in
//! `mongate-bench forward`: for `forward` and `gateway` (native XDP on the
//! DUT's gen-side veth) a threaded NAPI poller pinned to `dut_core` (SCHED_FIFO
//! unless `MONGATE_BENCH_NO_RT` is set), the worker itself pinned there too;
//! for `kernel`, RPS of the DUT's gen-side veth to `dut_core`, so IP
//! forwarding, htb and VXLAN encapsulation run in that core's softirq. The
//! sink receives with generic XDP behind RPS to `gen_core`, so its work
//! never lands on the DUT's core. The sink reads the bench stamp through the
//! tunnel header ([`crate::payload::read_stamp`]), so only packets that
//! went through the DUT's encapsulation are counted.

use std::net::Ipv4Addr;
use std::time::Duration;

use mongate_dataplane::afxdp::BindMode;
use mongate_dataplane::app::{
    ForwardConfig, GatewayConfig, RunningDataplane, start_forward, start_gateway,
};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_testbed::ForwardTopology;
use mongate_testbed::topology::forward::{DUT_SINK_V4, SINK_V4};

use crate::forward::{rps, sh, threaded_napi};
use crate::loadgen::{GenConfig, GenSide, RunReport, SinkSide, forward_addrs, run};
use crate::payload::{BENCH_PORT, GENEVE_PORT, VXLAN_PORT};

/// Inner destination of the generated traffic: inside the peer site's
/// prefix ([`PEER_PREFIX`]), routed by gen via the DUT, and not the sink's
/// own address (the kernel's VXLAN device must not route its own outer
/// packets into itself).
pub const INNER_DST: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 1);
/// The peer site's LAN prefix (contains [`INNER_DST`]).
pub const PEER_PREFIX: &str = "198.19.200.0/24";
/// The DUT site's LAN prefix (the generator's side).
pub const LAN_PREFIX: &str = "198.18.0.0/24";
/// VXLAN network id of the kernel baseline.
const VXLAN_ID: u32 = 42;

/// A device-under-test configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GwMode {
    /// Bare AF_XDP L3 forwarding (`start_forward`), native XDP, copy mode.
    Forward,
    /// The overlay gateway (`start_gateway`): classify, pace, GENEVE.
    Gateway,
    /// Linux: IP forwarding into VXLAN, htb on the VXLAN device.
    Kernel,
}

impl GwMode {
    /// All modes in report order.
    pub const ALL: [GwMode; 3] = [GwMode::Forward, GwMode::Gateway, GwMode::Kernel];
    /// CLI name.
    pub fn name(self) -> &'static str {
        match self {
            GwMode::Forward => "forward",
            GwMode::Gateway => "gateway",
            GwMode::Kernel => "kernel",
        }
    }
    /// UDP destination port of what the sink counts.
    fn sink_port(self) -> u16 {
        match self {
            GwMode::Forward => BENCH_PORT,
            GwMode::Gateway => GENEVE_PORT,
            GwMode::Kernel => VXLAN_PORT,
        }
    }
    /// Where the DUT's work runs, and what the sink counts.
    pub fn placement(self, dut_core: usize, gen_core: usize) -> String {
        match self {
            GwMode::Forward => format!(
                "AF_XDP worker pinned to core {dut_core}; veth NAPI (native XDP) in a threaded poller pinned to core {dut_core}; sink (generic XDP, RPS) and generator on core {gen_core}; sink counts bench UDP {BENCH_PORT}"
            ),
            GwMode::Gateway => format!(
                "gateway worker pinned to core {dut_core}; veth NAPI (native XDP) in a threaded poller pinned to core {dut_core}; sink (generic XDP, RPS) and generator on core {gen_core}; sink counts GENEVE (UDP {GENEVE_PORT}) carrying bench packets"
            ),
            GwMode::Kernel => format!(
                "kernel forwarding + htb + VXLAN in core {dut_core}'s softirq (RPS of the DUT's ingress veth); sink (generic XDP, RPS) and generator on core {gen_core}; sink counts VXLAN (UDP {VXLAN_PORT}) carrying bench packets"
            ),
        }
    }
}

impl std::str::FromStr for GwMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GwMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mode {s:?}: use forward, gateway, kernel"))
    }
}

/// Benchmark parameters.
#[derive(Clone, Debug)]
pub struct GatewayBench {
    /// DUT configurations to measure.
    pub modes: Vec<GwMode>,
    /// Inner frame sizes (incl. FCS).
    pub sizes: Vec<u32>,
    /// Seconds of the maximum-effort trial.
    pub seconds: f64,
    /// Seconds of each throughput-search trial.
    pub search_seconds: f64,
    /// Binary-search steps.
    pub search_steps: u32,
    /// Generated flows (UDP source ports) = gateway sessions.
    pub flows: u16,
    /// Overlay flows of the one class (all on the route [dut, sink]).
    pub overlay_flows: u16,
    /// Planned rate of every overlay flow, packets/s (far above the link).
    pub flow_pps: f64,
    /// Loss ratio accepted by the throughput search.
    pub loss_tolerance: f64,
    /// Core of the device under test.
    pub dut_core: usize,
    /// Core of the generator and the sink.
    pub gen_core: usize,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for GatewayBench {
    fn default() -> Self {
        Self {
            modes: GwMode::ALL.to_vec(),
            sizes: vec![64, 512],
            seconds: 3.0,
            search_seconds: 1.0,
            search_steps: 7,
            flows: 64,
            overlay_flows: 64,
            flow_pps: 10e6,
            loss_tolerance: 0.001,
            dut_core: 1,
            gen_core: 0,
            progress: true,
        }
    }
}

impl GatewayBench {
    /// A short run: 64-byte frames, 1 s maximum-effort trial, five 0.5 s
    /// search trials per mode.
    pub fn quick() -> Self {
        Self {
            sizes: vec![64],
            seconds: 1.0,
            search_seconds: 0.5,
            search_steps: 5,
            ..Self::default()
        }
    }
}

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GwCell {
    /// DUT configuration.
    pub mode: GwMode,
    /// Inner frame size incl. FCS.
    pub size: u32,
    /// Highest rate delivered within the loss tolerance, Mpps (per DUT core:
    /// the DUT has one core).
    pub mpps: f64,
    /// Gbit/s of inner frames incl. FCS.
    pub gbps: f64,
    /// The run at the reported rate.
    pub run: RunReport,
    /// Generator's ceiling (pps) measured at maximum effort.
    pub generator_max_pps: f64,
    /// True when the figure is set by the generator, not the DUT.
    pub generator_bound: bool,
    /// Drops counted by the DUT's worker and its sockets' kernel counters
    /// (AF_XDP modes) during the cell (search included).
    pub dut_drops: std::collections::BTreeMap<String, u64>,
    /// Gateway only: what the gateway's flow counters say at the end of
    /// the cell (cumulative since the gateway started).
    pub overlay: Option<OverlayCounters>,
}

/// The gateway's own per-flow counters, summed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OverlayCounters {
    /// Overlay flows that sent at least one packet (sessions spread over them).
    pub flows_used: usize,
    /// GENEVE packets sent, all flows.
    pub tx_packets: u64,
    /// Drop-tail drops of the pacing queues, all flows.
    pub queue_drops: u64,
    /// Smallest pacing rate in force among the flows, packets/s.
    pub min_rate_pps: f64,
}

fn overlay_counters(name: &str) -> Option<OverlayCounters> {
    use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
    let r = FlowStatsRegion::open(&flows_path(name)).ok()?;
    let t = r.totals();
    Some(OverlayCounters {
        flows_used: t.iter().filter(|(_, v)| v.tx_packets > 0).count(),
        tx_packets: t.iter().map(|(_, v)| v.tx_packets).sum(),
        queue_drops: t.iter().map(|(_, v)| v.queue_drops).sum(),
        min_rate_pps: t
            .iter()
            .map(|(_, v)| v.rate_pps)
            .fold(f64::INFINITY, f64::min),
    })
}

/// Ratios at one size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ratio {
    /// Inner frame size.
    pub size: u32,
    /// gateway Mpps / forward Mpps.
    pub gateway_over_forward: Option<f64>,
    /// gateway Mpps / kernel Mpps.
    pub gateway_over_kernel: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GatewayReport {
    /// DUT core.
    pub dut_core: usize,
    /// Generator and sink core.
    pub gen_core: usize,
    /// Seconds of the maximum-effort trial.
    pub seconds: f64,
    /// Seconds per search trial.
    pub search_seconds: f64,
    /// Loss tolerance of the search.
    pub loss_tolerance: f64,
    /// Generated flows (sessions).
    pub flows: u16,
    /// Overlay flows of the gateway's class.
    pub overlay_flows: u16,
    /// Planned pps per overlay flow.
    pub flow_pps: f64,
    /// Where each mode's work runs.
    pub placement: Vec<(GwMode, String)>,
    /// The cells.
    pub cells: Vec<GwCell>,
    /// gateway/forward and gateway/kernel per size.
    pub ratios: Vec<Ratio>,
}

/// The DUT's site configuration ([`BenchSite::toml`]).
#[derive(Clone, Debug)]
pub struct BenchSite {
    /// LAN interface (gen side).
    pub lan_if: String,
    /// The one AF_XDP uplink (sink side).
    pub uplink_if: String,
    /// Outer source address.
    pub local: Ipv4Addr,
    /// The peer's gateway address (the sink).
    pub peer_gw: Ipv4Addr,
    /// Next hop MAC on the uplink (the sink's).
    pub peer_mac: [u8; 6],
    /// Flows of the one UDP class, all on the route [dut, sink].
    pub overlay_flows: u16,
    /// Sessions the plan admits.
    pub sessions: u32,
    /// Planned rate of every flow, packets/s.
    pub flow_pps: f64,
}

impl BenchSite {
    /// The site TOML: LAN [`LAN_PREFIX`], one uplink, one peer `sink` owning
    /// [`PEER_PREFIX`], one UDP class with `overlay_flows` flows, and a plan
    /// admitting `sessions` sessions with a per-flow rate of `flow_pps`
    /// packets/s at the default mean packet size of 1250 bytes.
    pub fn toml(&self) -> String {
        let Self {
            lan_if,
            uplink_if,
            local,
            peer_gw,
            peer_mac,
            overlay_flows,
            sessions,
            flow_pps,
        } = self.clone();
        let mac = peer_mac.map(|b| format!("{b:02x}")).join(":");
        let mut s = format!(
            r#"[site]
name = "dut"
vni = 42
lan_interface = "{lan_if}"
lan_prefixes = ["{LAN_PREFIX}"]

[security]
mode = "off"

[[uplinks]]
name = "up0"
interface = "{uplink_if}"
local_address = "{local}"
capacity_mbps = 100000
gateway_mac = "{mac}"
backend = "af_xdp"

[[peers]]
name = "sink"
prefixes = ["{PEER_PREFIX}"]
gateways = ["{peer_gw}"]

[[classes]]
id = "udp"
source = "dut"
destination = "sink"
type = "bench"
overflow = "drop"

[[classes.rules]]
protocol = "udp"
"#
        );
        for i in 0..overlay_flows.max(1) {
            s += &format!(
                "\n[[flows]]\nid = \"f{i}\"\nclass = \"udp\"\nroute = [\"dut\", \"sink\"]\n"
            );
        }
        // Per flow: target pps = sessions x rate_mbps x (1e6 / (8 x 1250)).
        let rate_mbps = flow_pps / (f64::from(sessions.max(1)) * 100.0);
        s += &format!(
            "\n[plan]\nepoch = 1\n\n[[plan.classes]]\nid = \"udp\"\nsessions = {sessions}\n"
        );
        for i in 0..overlay_flows.max(1) {
            s += &format!(
                "\n[[plan.flows]]\nid = \"f{i}\"\nrate_mbps = {rate_mbps:.3}\nweight = 1.0\n"
            );
        }
        s
    }
}

/// The kernel gateway in the DUT namespace: VXLAN to the sink, the peer
/// prefix routed into it (static neighbour: nothing answers ARP inside the
/// tunnel), htb on the VXLAN device classifying UDP into a class far above
/// the offered load, forwarding on.
fn kernel_gateway(topo: &ForwardTopology, uplink_if: &str) -> anyhow::Result<()> {
    topo.set_kernel_forwarding(true)?;
    let script = format!(
        "set -e
ip link add vx0 type vxlan id {VXLAN_ID} remote {SINK_V4} local {DUT_SINK_V4} dstport {VXLAN_PORT} dev {uplink_if}
ip link set vx0 txqueuelen 1000
ip link set vx0 up
ip route add {PEER_PREFIX} dev vx0
ip neigh replace {INNER_DST} lladdr 02:6d:c6:13:c8:01 dev vx0 nud permanent
tc qdisc replace dev vx0 root handle 1: htb default 20
tc class add dev vx0 parent 1: classid 1:1 htb rate 40gbit ceil 40gbit
tc class add dev vx0 parent 1:1 classid 1:10 htb rate 30gbit ceil 40gbit
tc class add dev vx0 parent 1:1 classid 1:20 htb rate 10gbit ceil 40gbit
tc filter add dev vx0 parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:10
"
    );
    sh(&topo.dut_ns, &script)
}

/// Packets the kernel's htb sent in class 1:10 (the UDP class), for the
/// report's sanity check (None if tc's output cannot be read).
fn htb_udp_packets(topo: &ForwardTopology) -> Option<u64> {
    let out = topo
        .dut_ns
        .exec_unchecked(&["tc", "-s", "class", "show", "dev", "vx0", "classid", "1:10"])
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "Sent" {
            let _bytes = words.next()?;
            let _b = words.next()?;
            return words.next()?.parse().ok();
        }
    }
    None
}

fn total_drops(rd: &RunningDataplane) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for w in rd.snapshot() {
        for (k, v) in w.drops {
            *m.entry(k).or_insert(0) += v;
        }
        // Kernel-side counters of the worker's sockets (before our rings).
        for (k, v) in [
            ("kernel_rx_dropped", &w.kernel_rx_dropped),
            ("kernel_rx_ring_full", &w.kernel_rx_ring_full),
            ("kernel_fill_empty", &w.kernel_fill_empty),
        ] {
            *m.entry(k.to_string()).or_insert(0) += v.iter().sum::<u64>();
        }
    }
    m
}

fn diff(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Starts the DUT of `mode` (nothing to start for `kernel`, which is
/// configured instead). Returns the in-process dataplane, if any.
fn start_dut(
    b: &GatewayBench,
    mode: GwMode,
    topo: &ForwardTopology,
    name: &str,
) -> anyhow::Result<Option<RunningDataplane>> {
    let dut_in = topo.dut_in_if().ifname.clone();
    let dut_out = topo.dut_out_if().ifname.clone();
    let sink_mac = topo.sink_if().mac.0;
    let core = b.dut_core;
    match mode {
        GwMode::Kernel => {
            rps(&topo.dut_ns, &dut_in, core)?;
            kernel_gateway(topo, &dut_out)?;
            Ok(None)
        }
        GwMode::Forward => {
            let mut c = ForwardConfig::new(&dut_in, &dut_out, sink_mac);
            c.cores = vec![core];
            c.xdp_mode = XdpMode::Native;
            c.bind = BindMode::Copy;
            c.name = name.to_string();
            let rd = topo.dut_ns.run_in(move || start_forward(&c))??;
            threaded_napi(&topo.dut_ns, &dut_in, core)?;
            Ok(Some(rd))
        }
        GwMode::Gateway => {
            let text = BenchSite {
                lan_if: dut_in.clone(),
                uplink_if: dut_out,
                local: DUT_SINK_V4,
                peer_gw: SINK_V4,
                peer_mac: sink_mac,
                overlay_flows: b.overlay_flows,
                sessions: u32::from(b.flows.max(1)),
                flow_pps: b.flow_pps,
            }
            .toml();
            let site = Config::from_toml_str(&text, "bench-gateway.toml")
                .map_err(|e| anyhow::anyhow!("bench site config: {e}"))?;
            let mut c = GatewayConfig::new(site);
            c.name = name.to_string();
            c.xdp_mode = XdpMode::Native;
            c.bind = BindMode::Copy;
            c.frames = 16384;
            c.core = Some(core);
            c.control = false;
            c.settings.open_loop = true;
            c.settings.initial_fraction = 1.0;
            let rd = topo.dut_ns.run_in(move || start_gateway(&c))??;
            threaded_napi(&topo.dut_ns, &dut_in, core)?;
            Ok(Some(rd))
        }
    }
}

/// One trial: generator and sink on `gen_core`, sink steering `port`.
fn trial(
    topo: &ForwardTopology,
    b: &GatewayBench,
    mode: GwMode,
    cfg: &GenConfig,
) -> anyhow::Result<RunReport> {
    let gi = topo.gen_if().ifname.clone();
    let si = topo.sink_if().ifname.clone();
    let port = mode.sink_port();
    let mut gs = topo.gen_ns.run_in(move || GenSide::open(&gi, 1))??;
    let mut sk = topo
        .sink_ns
        .run_in(move || SinkSide::open_ports(&si, 1, XdpMode::Generic, &[port]))??;
    let core = b.gen_core;
    std::thread::scope(|sc| {
        sc.spawn(|| {
            mongate_dataplane::worker::pin_to_core(core);
            run(Some(&mut gs), Some(&mut sk), cfg)
        })
        .join()
    })
    .map_err(|_| anyhow::anyhow!("load generator thread panicked"))
}

/// The forward bench's search: maximum effort first; if it loses more than
/// the tolerance, a binary search on the offered rate.
fn search(
    topo: &ForwardTopology,
    b: &GatewayBench,
    mode: GwMode,
    cfg: &GenConfig,
) -> anyhow::Result<(RunReport, f64, bool)> {
    let max_run = trial(topo, b, mode, cfg)?;
    let gen_max = max_run.tx_pps;
    if b.progress {
        eprintln!(
            "   {:>5} B max effort: tx {:.3} Mpps rx {:.3} Mpps loss {:.3}%",
            cfg.sizes[0],
            max_run.tx_pps / 1e6,
            max_run.rx_pps / 1e6,
            max_run.loss * 100.0
        );
    }
    if max_run.loss <= b.loss_tolerance {
        return Ok((max_run, gen_max, true));
    }
    let (mut lo, mut hi) = (0.0f64, gen_max);
    let mut best: Option<RunReport> = None;
    let short = Duration::from_secs_f64(b.search_seconds);
    for step in 0..b.search_steps {
        let rate = if step == 0 { hi * 0.5 } else { (lo + hi) / 2.0 };
        let r = trial(
            topo,
            b,
            mode,
            &GenConfig {
                rate_pps: rate,
                duration: short,
                ..cfg.clone()
            },
        )?;
        if b.progress {
            eprintln!(
                "   search {:>5} B at {:>8.3} Mpps: loss {:.3}%",
                cfg.sizes[0],
                rate / 1e6,
                r.loss * 100.0
            );
        }
        if r.loss <= b.loss_tolerance && r.tx_pps >= 0.97 * rate {
            lo = rate;
            best = Some(r);
        } else {
            hi = rate;
        }
    }
    let r = match best {
        Some(r) => r,
        None => trial(
            topo,
            b,
            mode,
            &GenConfig {
                rate_pps: gen_max * 0.01,
                duration: short,
                ..cfg.clone()
            },
        )?,
    };
    Ok((r, gen_max, false))
}

/// Runs the benchmark. Needs root. Builds one topology per mode and removes it.
pub fn run_gateway_bench(b: &GatewayBench) -> anyhow::Result<GatewayReport> {
    let mut cells = Vec::new();
    for &mode in &b.modes {
        if b.progress {
            eprintln!(
                "== {}: {}",
                mode.name(),
                mode.placement(b.dut_core, b.gen_core)
            );
        }
        let topo = ForwardTopology::new(1)?;
        rps(&topo.sink_ns, &topo.sink_if().ifname, b.gen_core)?;
        let name = format!("benchgw{}", std::process::id());
        let dut = start_dut(b, mode, &topo, &name)?;
        let addrs = forward_addrs(topo.gen_if().mac.0, topo.dut_in_if().mac.0, INNER_DST);
        for &size in &b.sizes {
            let cfg = GenConfig {
                addrs,
                flows: b.flows,
                sizes: vec![size],
                rate_pps: 0.0,
                poisson: false,
                count: u64::MAX,
                duration: Duration::from_secs_f64(b.seconds),
                seed: 1,
                progress: false,
            };
            let before = dut.as_ref().map(total_drops).unwrap_or_default();
            let (report, gen_max, bound) = search(&topo, b, mode, &cfg)?;
            let dut_drops = dut
                .as_ref()
                .map(|d| diff(&total_drops(d), &before))
                .unwrap_or_default();
            let overlay = if mode == GwMode::Gateway {
                // The counters are published every 100 ms.
                std::thread::sleep(Duration::from_millis(250));
                overlay_counters(&name)
            } else {
                None
            };
            let pps = report.rx_pps;
            let generator_bound = bound || pps >= 0.9 * gen_max;
            if b.progress {
                eprintln!(
                    "   {:>5} B: {:>7.3} Mpps  loss {:>6.3}%  p50 {:>8.1} us  p99 {:>8.1} us  DUT drops {:?}",
                    size,
                    pps / 1e6,
                    report.loss * 100.0,
                    report.latency_us_p50,
                    report.latency_us_p99,
                    dut_drops
                );
                if let Some(o) = &overlay {
                    eprintln!("   gateway flow counters: {o:?}");
                }
            }
            cells.push(GwCell {
                mode,
                size,
                mpps: pps / 1e6,
                gbps: pps * f64::from(size) * 8.0 / 1e9,
                run: report,
                generator_max_pps: gen_max,
                generator_bound,
                dut_drops,
                overlay,
            });
        }
        if mode == GwMode::Kernel
            && b.progress
            && let Some(n) = htb_udp_packets(&topo)
        {
            eprintln!("   htb UDP class 1:10 sent {n} packets");
        }
        if let Some(d) = dut {
            // Detach XDP from inside the namespace the interfaces live in.
            topo.dut_ns.run_in(move || drop(d.stop()))?;
        }
        drop(topo);
    }
    let mut sizes: Vec<u32> = cells.iter().map(|c| c.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let find = |m: GwMode, s: u32| {
        cells
            .iter()
            .find(|c| c.mode == m && c.size == s)
            .map(|c| c.mpps)
    };
    let ratio = |a: Option<f64>, d: Option<f64>| match (a, d) {
        (Some(a), Some(d)) if d > 0.0 => Some(a / d),
        _ => None,
    };
    let ratios = sizes
        .iter()
        .map(|&s| Ratio {
            size: s,
            gateway_over_forward: ratio(find(GwMode::Gateway, s), find(GwMode::Forward, s)),
            gateway_over_kernel: ratio(find(GwMode::Gateway, s), find(GwMode::Kernel, s)),
        })
        .collect();
    Ok(GatewayReport {
        dut_core: b.dut_core,
        gen_core: b.gen_core,
        seconds: b.seconds,
        search_seconds: b.search_seconds,
        loss_tolerance: b.loss_tolerance,
        flows: b.flows,
        overlay_flows: b.overlay_flows,
        flow_pps: b.flow_pps,
        placement: b
            .modes
            .iter()
            .map(|&m| (m, m.placement(b.dut_core, b.gen_core)))
            .collect(),
        cells,
        ratios,
    })
}

/// The human table.
pub fn table(r: &GatewayReport) -> String {
    let mut s = format!(
        "gateway benchmark: DUT on core {} (one core: Mpps = Mpps per core), generator+sink on core {}; {} flows (sessions), {} overlay flows at {:.1} Mpps planned each; throughput search, loss <= {}%\n",
        r.dut_core,
        r.gen_core,
        r.flows,
        r.overlay_flows,
        r.flow_pps / 1e6,
        r.loss_tolerance * 100.0
    );
    for (m, p) in &r.placement {
        s += &format!("  {:<8} {p}\n", m.name());
    }
    s += &format!(
        "{:<8} {:>6} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9}\n",
        "mode", "size", "Mpps", "Gbps", "loss %", "p50 us", "p99 us", "gen max"
    );
    for c in &r.cells {
        s += &format!(
            "{:<8} {:>6} {:>9.3} {:>8.2} {:>8.3} {:>10.1} {:>10.1} {:>8.3}{}\n",
            c.mode.name(),
            c.size,
            c.mpps,
            c.gbps,
            c.run.loss * 100.0,
            c.run.latency_us_p50,
            c.run.latency_us_p99,
            c.generator_max_pps / 1e6,
            if c.generator_bound { "*" } else { "" }
        );
    }
    let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
    for q in &r.ratios {
        s += &format!(
            "size {:>5}: gateway/forward {}  gateway/kernel {}\n",
            q.size,
            f(q.gateway_over_forward),
            f(q.gateway_over_kernel)
        );
    }
    s += "* generator-bound: the figure is a lower bound set by the generator+sink core, not the DUT's limit\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_config_parses() {
        let t = BenchSite {
            lan_if: "dut0".into(),
            uplink_if: "dut1".into(),
            local: DUT_SINK_V4,
            peer_gw: SINK_V4,
            peer_mac: [2, 0x6d, 198, 19, 0, 1],
            overlay_flows: 64,
            sessions: 64,
            flow_pps: 10e6,
        }
        .toml();
        let c = Config::from_toml_str(&t, "t.toml").expect("bench site config is valid");
        assert_eq!(c.flows.len(), 64);
        assert_eq!(c.peers.len(), 1);
        let plan = c.plan.as_ref().expect("plan");
        assert_eq!(plan.sessions_of(c.class_index("udp").expect("class")), 64);
    }

    #[test]
    fn modes_parse() {
        for m in GwMode::ALL {
            assert_eq!(m.name().parse::<GwMode>(), Ok(m));
        }
        assert!("nope".parse::<GwMode>().is_err());
    }
}
