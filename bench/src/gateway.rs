//! `mongate-bench gateway`: the full overlay gateway pipeline (classify,
//! enqueue, Poisson pacing, GENEVE encapsulation) next to bare AF_XDP L3
//! forwarding and next to a Linux kernel gateway doing the same job (IP
//! forwarding into a VXLAN device with an htb qdisc that classifies UDP into
//! a class far above the offered load), on the same `gen — dut — sink`
//! topology, in one run, as ratios. The same gateway with `[security]` on
//! (every packet to the peer sealed with AES-256-GCM), and userspace
//! WireGuard (boringtun, when installed) as the encrypted baseline.
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
//! went through the DUT's encapsulation are counted. Encrypted tunnels hide
//! the stamp: for them the sink counts the packets that carry the DUT's
//! encapsulation of one generated frame ([`crate::payload::SinkMatch`]).
//!
//! `gateway-secure` has no peer gateway to run a handshake with, so the
//! bench plays the DUT's control process for keys: it writes the private key
//! file the config names (0600), attaches to the DUT's control region and
//! installs random session keys (`Command::InstallKey`, initiator, so the
//! DUT seals at once). `boringtun` runs `boringtun-cli` in the DUT namespace
//! (one thread, pinned to the DUT core), the generator's traffic routed into
//! its tun device by the kernel; a second boringtun in the sink namespace
//! answers the handshake once, before the sink's XDP program takes UDP
//! 51820 for the counting.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mongate_dataplane::afxdp::BindMode;
use mongate_dataplane::app::{
    ForwardConfig, GatewayConfig, RunningDataplane, start_forward, start_gateway,
};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::{Config, encode_key};
use mongate_dataplane::shm::msg::{KEY_SLOT_BITS, KeyInstall};
use mongate_dataplane::shm::region::{ControlPort, ctl_path};
use mongate_dataplane::shm::{Command, Telemetry};
use mongate_dataplane::sys::clock::now_ns;
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::topology::forward::{DUT_GEN_V4, DUT_SINK_V4, ForwardOptions, SINK_V4};
use mongate_testbed::{ForwardTopology, NsChild};

use crate::cpustat::{CpuCost, CpuTimes};
use crate::forward::{CPU_BUSY, rps, sh, threaded_napi};
use crate::loadgen::{GenConfig, GenSide, RunReport, SinkSide, forward_addrs, run_matching};
use crate::payload::{BENCH_PORT, GENEVE_PORT, SinkMatch, VXLAN_PORT, WIREGUARD_PORT};

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
/// MTU of both links: room for a 1500-byte inner frame (1518 B incl. FCS)
/// plus the largest tunnel overhead measured (GENEVE with the flow and
/// security options and the AEAD tag: 88 bytes), so no mode fragments or
/// answers "fragmentation needed".
pub const LINK_MTU: u32 = 1600;
/// Largest inner frame size (incl. FCS) the bench accepts with [`LINK_MTU`].
pub const MAX_SIZE: u32 = 1500;

/// A device-under-test configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GwMode {
    /// Bare AF_XDP L3 forwarding (`start_forward`), native XDP, copy mode.
    Forward,
    /// The overlay gateway (`start_gateway`): classify, pace, GENEVE.
    Gateway,
    /// The overlay gateway with `[security]` on: the same pipeline, every
    /// packet to the peer sealed (AES-256-GCM, `ring`).
    GatewaySecure,
    /// Linux: IP forwarding into VXLAN, htb on the VXLAN device.
    Kernel,
    /// Userspace WireGuard (`boringtun-cli`, one thread), the kernel
    /// forwarding into its tun device.
    Boringtun,
}

impl GwMode {
    /// All modes in report order.
    pub const ALL: [GwMode; 5] = [
        GwMode::Forward,
        GwMode::Gateway,
        GwMode::GatewaySecure,
        GwMode::Kernel,
        GwMode::Boringtun,
    ];
    /// CLI name.
    pub fn name(self) -> &'static str {
        match self {
            GwMode::Forward => "forward",
            GwMode::Gateway => "gateway",
            GwMode::GatewaySecure => "gateway-secure",
            GwMode::Kernel => "kernel",
            GwMode::Boringtun => "boringtun",
        }
    }
    /// UDP destination port of what the sink counts.
    fn sink_port(self) -> u16 {
        match self {
            GwMode::Forward => BENCH_PORT,
            GwMode::Gateway | GwMode::GatewaySecure => GENEVE_PORT,
            GwMode::Kernel => VXLAN_PORT,
            GwMode::Boringtun => WIREGUARD_PORT,
        }
    }
    /// What the sink counts for frames of `size` bytes (incl. FCS).
    pub fn sink_match(self, size: u32) -> SinkMatch {
        let frame_len = size.saturating_sub(4);
        match self {
            GwMode::Forward | GwMode::Gateway | GwMode::Kernel => SinkMatch::Stamp,
            GwMode::GatewaySecure => SinkMatch::GeneveSealed { frame_len },
            GwMode::Boringtun => SinkMatch::WireGuardData {
                port: WIREGUARD_PORT,
                ip_len: frame_len.saturating_sub(14),
            },
        }
    }
    /// The sink reads the bench stamp (latency and reordering measured).
    pub fn stamped(self) -> bool {
        self.sink_match(64) == SinkMatch::Stamp
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
            GwMode::GatewaySecure => format!(
                "gateway worker (classify, pace, GENEVE, AES-256-GCM seal) pinned to core {dut_core}; veth NAPI (native XDP) in a threaded poller pinned to core {dut_core}; the bench's key installer (as the control) on core {gen_core}; sink (generic XDP, RPS) and generator on core {gen_core}; sink counts GENEVE (UDP {GENEVE_PORT}) with the security option (0x82) and the sealed length (no stamp: no latency)"
            ),
            GwMode::Kernel => format!(
                "kernel forwarding + htb + VXLAN in core {dut_core}'s softirq (RPS of the DUT's ingress veth); sink (generic XDP, RPS) and generator on core {gen_core}; sink counts VXLAN (UDP {VXLAN_PORT}) carrying bench packets"
            ),
            GwMode::Boringtun => format!(
                "kernel forwarding into tun in core {dut_core}'s softirq (RPS of the DUT's ingress veth); boringtun-cli -t 1 (tun read, ChaCha20-Poly1305, UDP send) pinned to core {dut_core}; the handshake responder (boringtun in the sink namespace, idle during trials), sink (generic XDP, RPS) and generator on core {gen_core}; sink counts WireGuard transport data (UDP {WIREGUARD_PORT}, type 4, sealed length; no stamp: no latency)"
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
            .ok_or_else(|| {
                format!(
                    "unknown mode {s:?}: use {}",
                    GwMode::ALL.map(GwMode::name).join(", ")
                )
            })
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
    /// `boringtun-cli` to run for [`GwMode::Boringtun`] (`None`: that mode
    /// is skipped with a line saying so).
    pub boringtun_cli: Option<PathBuf>,
    /// Offered load of the CPU-per-packet trials, packets/s (0: none).
    pub cpu_load_pps: f64,
    /// Seconds of each CPU-per-packet trial.
    pub cpu_seconds: f64,
    /// The DUT worker's idle policy in the CPU trials (AF_XDP modes).
    pub cpu_idle: IdlePolicy,
    /// Only the CPU-per-packet trials (no throughput search).
    pub cpu_only: bool,
}

impl Default for GatewayBench {
    fn default() -> Self {
        Self {
            modes: GwMode::ALL.to_vec(),
            sizes: vec![64, 512, 1500],
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
            boringtun_cli: find_program("boringtun-cli"),
            cpu_load_pps: 50_000.0,
            cpu_seconds: 4.0,
            cpu_idle: crate::cpustat::TRIAL_IDLE,
            cpu_only: false,
        }
    }
}

/// `name` in `PATH`, else in `$HOME/.cargo/bin` (where `cargo install` puts
/// it; `sudo` often resets `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl GatewayBench {
    /// A short run: 64-byte frames, 1 s maximum-effort trial, five 0.5 s
    /// search trials per mode, a 1 s CPU trial.
    pub fn quick() -> Self {
        Self {
            sizes: vec![64],
            seconds: 1.0,
            search_seconds: 0.5,
            search_steps: 5,
            cpu_seconds: 1.0,
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
    /// `gateway-secure` only: packets the DUT sealed with the key installed
    /// for this cell (its send counter, from the DUT's key telemetry; `None`
    /// if the DUT reported none).
    pub sealed_packets: Option<u64>,
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
    /// gateway-secure Mpps / gateway Mpps (issue 11's goal: >= 0.70 at 512 B).
    pub secure_over_gateway: Option<f64>,
    /// boringtun Mpps / gateway-secure Mpps.
    pub boringtun_over_secure: Option<f64>,
    /// gateway CPU ns per packet / forward CPU ns per packet (at the CPU
    /// trials' fixed load).
    pub cpu_gateway_over_forward: Option<f64>,
}

/// CPU the DUT core spent per packet at a fixed offered load.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GwCpuCell {
    /// DUT configuration.
    pub mode: GwMode,
    /// Inner frame size incl. FCS.
    pub size: u32,
    /// Offered load, packets/s.
    pub load_pps: f64,
    /// Busy ns of the DUT core per packet received at the sink (`None`:
    /// see `error`).
    pub cpu_ns_per_packet: Option<f64>,
    /// The whole reading.
    pub cost: Option<CpuCost>,
    /// Why there is no figure.
    pub error: Option<String>,
    /// Sent / received / loss of the trial.
    pub run: RunReport,
}

impl GwCpuCell {
    fn summary(&self) -> String {
        match (&self.cost, &self.error) {
            (Some(c), _) => crate::cpustat::summary(c, self.run.loss),
            (None, Some(e)) => format!("no figure: {e}"),
            (None, None) => "no figure".into(),
        }
    }
}

/// Issue 11's goal: the encrypted gateway keeps at least this share of the
/// unencrypted gateway's rate at [`SECURE_GOAL_SIZE`].
pub const SECURE_GOAL: f64 = 0.70;
/// Inner frame size of [`SECURE_GOAL`].
pub const SECURE_GOAL_SIZE: u32 = 512;

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
    /// Link MTU of the topology.
    pub link_mtu: u32,
    /// Modes not measured, and why.
    pub skipped: Vec<(GwMode, String)>,
    /// The cells.
    pub cells: Vec<GwCell>,
    /// gateway/forward, gateway/kernel, gateway-secure/gateway and
    /// boringtun/gateway-secure per size.
    pub ratios: Vec<Ratio>,
    /// gateway-secure/gateway >= [`SECURE_GOAL`] at [`SECURE_GOAL_SIZE`]
    /// (`None`: not measured in this run).
    pub secure_goal_met: Option<bool>,
    /// Offered load of the CPU trials (0: none ran).
    pub cpu_load_pps: f64,
    /// Seconds per CPU trial.
    pub cpu_seconds: f64,
    /// The AF_XDP DUTs' idle policy in the CPU trials.
    pub cpu_idle: IdlePolicy,
    /// What counts as busy.
    pub cpu_busy: &'static str,
    /// CPU per packet per mode and size.
    pub cpu: Vec<GwCpuCell>,
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
    /// `[security]` on: this private key file, and the peer's public key
    /// (base64); `None`: `mode = "off"`.
    pub security: Option<(PathBuf, String)>,
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
            security,
        } = self.clone();
        let mac = peer_mac.map(|b| format!("{b:02x}")).join(":");
        let (security, peer_key) = match security {
            Some((file, public)) => (
                format!("private_key_file = \"{}\"", file.display()),
                format!("public_key = \"{public}\"\n"),
            ),
            None => ("mode = \"off\"".to_string(), String::new()),
        };
        let mut s = format!(
            r#"[site]
name = "dut"
vni = 42
lan_interface = "{lan_if}"
lan_prefixes = ["{LAN_PREFIX}"]

[security]
{security}

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
{peer_key}
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

/// A directory for one mode's key files (mode 0700), removed on drop.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new(tag: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let p = std::env::temp_dir().join(format!("mongate-bench-{}-{tag}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", p.display()))?;
        Ok(Self(p))
    }

    /// Writes `text` to a new file `name` (O_EXCL|O_NOFOLLOW, mode 0600).
    fn write_secret(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.0.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", p.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(p)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `buf.len()` bytes from the kernel's CSPRNG.
fn random_bytes(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

/// The bench as the DUT's control process for keys: a thread (pinned to the
/// generator's core, polling every 10 ms) that owns the control port,
/// installs session keys on request, heartbeats, and keeps the send counter
/// of each key from the DUT's key telemetry.
struct KeyControl {
    req: mpsc::Sender<(KeyInstall, mpsc::Sender<Result<(), String>>)>,
    stop: Arc<AtomicBool>,
    /// local_index -> packets sealed (latest report).
    sent: Arc<Mutex<std::collections::BTreeMap<u32, u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    rotation: u32,
    _dir: KeyDir,
}

impl KeyControl {
    fn start(name: &str, core: usize, dir: KeyDir) -> anyhow::Result<Self> {
        let path = ctl_path(name);
        let (req, rx) = mpsc::channel::<(KeyInstall, mpsc::Sender<Result<(), String>>)>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            mongate_dataplane::worker::pin_to_core(core);
            let mut port = match ControlPort::attach(&path) {
                Ok(p) => {
                    let _ = ready_tx.send(Ok(()));
                    p
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("attach {}: {e}", path.display())));
                    return;
                }
            };
            while !stop2.load(Ordering::Relaxed) {
                while let Ok((k, answer)) = rx.try_recv() {
                    let r = port
                        .broadcast(&[Command::InstallKey(k)])
                        .map_err(|e| e.to_string());
                    let _ = answer.send(r);
                }
                port.heartbeat(now_ns());
                // Bounded: at most a few rings' worth per poll.
                for _ in 0..4096 {
                    match port.recv(0) {
                        Some(Ok(Telemetry::Keys { count, items })) => {
                            let n = usize::try_from(count).unwrap_or(0).min(items.len());
                            let mut m = sent2.lock().unwrap_or_else(|e| e.into_inner());
                            for k in &items[..n] {
                                m.insert(k.local_index, k.sent);
                            }
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("key control thread did not start"))
            .and_then(|r| r.map_err(|e| anyhow::anyhow!(e)));
        let kc = Self {
            req,
            stop,
            sent,
            thread: Some(thread),
            rotation: 0,
            _dir: dir,
        };
        ready.map(|()| kc)
    }

    /// Installs fresh random session keys for peer 0 (initiator: the DUT
    /// seals with them at once) in the next of the peer's 4 key slots.
    /// Returns the key's local index.
    fn install(&mut self) -> anyhow::Result<u32> {
        let mut r = [0u8; 72];
        random_bytes(&mut r)?;
        let slot = self.rotation % 4; // peer 0: slots 0..4
        self.rotation = self.rotation.wrapping_add(1);
        let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let mut k = KeyInstall {
            peer: 0,
            local_index: (word(0) & !((1u32 << KEY_SLOT_BITS) - 1)) | slot,
            remote_index: word(4),
            initiator: true,
            created_ns: now_ns(),
            ..KeyInstall::default()
        };
        k.send_key.copy_from_slice(&r[8..40]);
        k.recv_key.copy_from_slice(&r[40..72]);
        let (tx, rx) = mpsc::channel();
        self.req
            .send((k, tx))
            .map_err(|_| anyhow::anyhow!("key control thread stopped"))?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("key control thread did not answer"))?
            .map_err(|e| anyhow::anyhow!("InstallKey: {e}"))?;
        Ok(k.local_index)
    }

    /// Packets sealed with the key of `local_index`, as last reported.
    fn sealed(&self, local_index: u32) -> Option<u64> {
        let m = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&local_index).copied()
    }
}

impl Drop for KeyControl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Userspace WireGuard on the DUT and the handshake responder in the sink
/// namespace. Dropping it stops both and removes their UAPI sockets.
struct Boringtun {
    dut: NsChild,
    responder: NsChild,
    sockets: [PathBuf; 2],
    _dir: KeyDir,
}

impl Drop for Boringtun {
    fn drop(&mut self) {
        for c in [&self.dut, &self.responder] {
            let _ = c.stop(Duration::from_secs(2));
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// Directory of WireGuard's UAPI sockets (`/var/run/wireguard/<if>.sock`).
const WG_SOCK_DIR: &str = "/var/run/wireguard";

/// Runs `argv` (outside any namespace) with `input` on stdin; its stdout.
fn output_of(argv: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e}", argv[0]))?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let out = c.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts boringtun on the DUT (pinned to `dut_core`, one thread) with the
/// peer prefix routed into it, and a responder in the sink namespace (on
/// `gen_core`); completes one handshake (bounded: 10 s) so the DUT has a
/// session key before the sink's XDP program takes UDP 51820.
fn start_boringtun(
    b: &GatewayBench,
    topo: &ForwardTopology,
    cli: &Path,
) -> anyhow::Result<Boringtun> {
    if find_program("wg").is_none() {
        anyhow::bail!("`wg` (wireguard-tools) not found: it configures boringtun");
    }
    let dir = KeyDir::new("wg")?;
    let pid = std::process::id() % 100_000;
    let (dif, sif) = (format!("mgbwd{pid}"), format!("mgbws{pid}"));
    let mut keys = Vec::new();
    for side in ["dut", "sink"] {
        let private = output_of(&["wg", "genkey"], "")?;
        let public = output_of(&["wg", "pubkey"], &private)?;
        keys.push((dir.write_secret(&format!("{side}.key"), &private)?, public));
    }
    let sockets = [
        Path::new(WG_SOCK_DIR).join(format!("{dif}.sock")),
        Path::new(WG_SOCK_DIR).join(format!("{sif}.sock")),
    ];
    let spawn = |ns: &mongate_testbed::Netns, ifname: &str, core: usize| {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", &core.to_string()])
            .arg(cli)
            .args([
                "--foreground",
                "--threads",
                "1",
                "--disable-drop-privileges",
                "--log",
            ])
            .arg(dir.0.join(format!("{ifname}.log")))
            .arg(ifname)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        ns.spawn(c)
    };
    let dut = spawn(&topo.dut_ns, &dif, b.dut_core)?;
    let responder = spawn(&topo.sink_ns, &sif, b.gen_core)?;
    let wg = Boringtun {
        dut,
        responder,
        sockets,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !wg.sockets.iter().all(|s| s.exists()) {
        if Instant::now() > deadline || wg.dut.try_wait()?.is_some() {
            anyhow::bail!(
                "boringtun did not open its UAPI sockets ({}): see its log",
                wg.sockets
                    .iter()
                    .map(|s| s.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (dkey, dpub) = (&keys[0].0, &keys[0].1);
    let (skey, spub) = (&keys[1].0, &keys[1].1);
    rps(&topo.dut_ns, &topo.dut_in_if().ifname, b.dut_core)?;
    topo.set_kernel_forwarding(true)?;
    sh(
        &topo.dut_ns,
        &format!(
            "set -e
wg set {dif} private-key {dkey} listen-port {WIREGUARD_PORT} peer {spub} endpoint {SINK_V4}:{WIREGUARD_PORT} allowed-ips {PEER_PREFIX}
ip link set {dif} mtu 1500 up
ip route add {PEER_PREFIX} dev {dif}
",
            dkey = dkey.display()
        ),
    )?;
    sh(
        &topo.sink_ns,
        &format!(
            "set -e
wg set {sif} private-key {skey} listen-port {WIREGUARD_PORT} peer {dpub} allowed-ips 198.18.0.0/15
ip link set {sif} up
",
            skey = skey.display()
        ),
    )?;
    // One packet into the tunnel starts the handshake; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = topo.dut_ns.exec_unchecked(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            &DUT_GEN_V4.to_string(),
            &INNER_DST.to_string(),
        ]);
        let out = topo
            .dut_ns
            .exec_unchecked(&["wg", "show", &dif, "latest-handshakes"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let done = text
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| t > 0);
        if done {
            return Ok(wg);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "boringtun: no WireGuard handshake with the sink's responder within 10 s"
            );
        }
    }
}

/// What runs the DUT of one mode (dropping it stops it; the in-process
/// dataplane must be stopped inside its namespace, see [`run_gateway_bench`]).
#[derive(Default)]
struct Dut {
    dataplane: Option<RunningDataplane>,
    keys: Option<KeyControl>,
    boringtun: Option<Boringtun>,
}

/// Starts the DUT of `mode` (`kernel` is configured instead of started).
fn start_dut(
    b: &GatewayBench,
    mode: GwMode,
    topo: &ForwardTopology,
    name: &str,
    idle: Option<IdlePolicy>,
) -> anyhow::Result<Dut> {
    let dut_in = topo.dut_in_if().ifname.clone();
    let dut_out = topo.dut_out_if().ifname.clone();
    let sink_mac = topo.sink_if().mac.0;
    let core = b.dut_core;
    match mode {
        GwMode::Kernel => {
            rps(&topo.dut_ns, &dut_in, core)?;
            kernel_gateway(topo, &dut_out)?;
            Ok(Dut::default())
        }
        GwMode::Boringtun => {
            let cli = b
                .boringtun_cli
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("boringtun-cli not found"))?;
            Ok(Dut {
                boringtun: Some(start_boringtun(b, topo, cli)?),
                ..Dut::default()
            })
        }
        GwMode::Forward => {
            let mut c = ForwardConfig::new(&dut_in, &dut_out, sink_mac);
            c.cores = vec![core];
            c.xdp_mode = XdpMode::Native;
            c.bind = BindMode::Copy;
            c.name = name.to_string();
            if let Some(i) = idle {
                c.idle = i;
            }
            let rd = topo.dut_ns.run_in(move || start_forward(&c))??;
            threaded_napi(&topo.dut_ns, &dut_in, core)?;
            Ok(Dut {
                dataplane: Some(rd),
                ..Dut::default()
            })
        }
        GwMode::Gateway | GwMode::GatewaySecure => {
            let secure = mode == GwMode::GatewaySecure;
            let dir = if secure {
                let dir = KeyDir::new("secure")?;
                let mut k = [0u8; 64];
                random_bytes(&mut k)?;
                let mut private = [0u8; 32];
                private.copy_from_slice(&k[..32]);
                // X25519 clamping (a valid private key; the DUT never reads it).
                private[0] &= 248;
                private[31] = (private[31] & 127) | 64;
                let file = dir.write_secret("dut.key", &format!("{}\n", encode_key(&private)))?;
                let mut public = [0u8; 32];
                public.copy_from_slice(&k[32..]);
                // No handshake runs: the peer's public key is never used.
                Some((dir, file, encode_key(&public)))
            } else {
                None
            };
            let text = BenchSite {
                lan_if: dut_in.clone(),
                uplink_if: dut_out,
                local: DUT_SINK_V4,
                peer_gw: SINK_V4,
                peer_mac: sink_mac,
                overlay_flows: b.overlay_flows,
                sessions: u32::from(b.flows.max(1)),
                flow_pps: b.flow_pps,
                security: dir.as_ref().map(|(_, f, p)| (f.clone(), p.clone())),
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
            if let Some(i) = idle {
                c.idle = i;
            }
            // Both gateway modes have the control channel (the secure one
            // needs it for its keys), so they differ only in sealing.
            c.control = true;
            c.settings.open_loop = true;
            c.settings.initial_fraction = 1.0;
            c.settings.uplink_mtu = usize::try_from(LINK_MTU).unwrap_or(1500);
            let rd = topo.dut_ns.run_in(move || start_gateway(&c))??;
            let mut dut = Dut {
                dataplane: Some(rd),
                ..Dut::default()
            };
            if let Some((dir, _, _)) = dir {
                dut.keys = Some(KeyControl::start(name, b.gen_core, dir)?);
            }
            threaded_napi(&topo.dut_ns, &dut_in, core)?;
            Ok(dut)
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
    trial_cpu(topo, b, mode, cfg, None).map(|(r, _)| r)
}

/// [`trial`], and with `cpu_core` the change of that core's `/proc/stat`
/// counters from the generator's start to its end (the sockets and XDP
/// programs opened before).
fn trial_cpu(
    topo: &ForwardTopology,
    b: &GatewayBench,
    mode: GwMode,
    cfg: &GenConfig,
    cpu_core: Option<usize>,
) -> anyhow::Result<(RunReport, Option<Result<CpuTimes, String>>)> {
    let gi = topo.gen_if().ifname.clone();
    let si = topo.sink_if().ifname.clone();
    let port = mode.sink_port();
    let mut gs = topo.gen_ns.run_in(move || GenSide::open(&gi, 1))??;
    let mut sk = topo
        .sink_ns
        .run_in(move || SinkSide::open_ports(&si, 1, XdpMode::Generic, &[port]))??;
    let core = b.gen_core;
    let matching = mode.sink_match(cfg.sizes.first().copied().unwrap_or(64));
    std::thread::scope(|sc| {
        sc.spawn(|| {
            mongate_dataplane::worker::pin_to_core(core);
            match cpu_core {
                Some(c) => {
                    let (r, d) = crate::cpustat::around(c, || {
                        run_matching(Some(&mut gs), Some(&mut sk), cfg, matching)
                    });
                    (r, Some(d))
                }
                None => (
                    run_matching(Some(&mut gs), Some(&mut sk), cfg, matching),
                    None,
                ),
            }
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

/// Runs the benchmark. Needs root. Builds one topology per mode and removes
/// it (also when the mode fails).
pub fn run_gateway_bench(b: &GatewayBench) -> anyhow::Result<GatewayReport> {
    let mut cells = Vec::new();
    let mut cpu: Vec<GwCpuCell> = Vec::new();
    let mut skipped = Vec::new();
    let mut modes = Vec::new();
    for &mode in &b.modes {
        if mode == GwMode::Boringtun && b.boringtun_cli.is_none() {
            let why =
                "boringtun-cli not found in PATH or ~/.cargo/bin (cargo install boringtun-cli)";
            if b.progress {
                eprintln!("== boringtun: SKIPPED: {why}");
            }
            skipped.push((mode, why.to_string()));
            continue;
        }
        modes.push(mode);
        if b.progress {
            eprintln!(
                "== {}: {}",
                mode.name(),
                mode.placement(b.dut_core, b.gen_core)
            );
        }
        let topo = ForwardTopology::with_options(&ForwardOptions {
            queues: 1,
            mtu: LINK_MTU,
            ..ForwardOptions::default()
        })?;
        rps(&topo.sink_ns, &topo.sink_if().ifname, b.gen_core)?;
        let name = format!("benchgw{}", std::process::id());
        let cpu_idle = b.cpu_only.then_some(b.cpu_idle);
        let mut dut = start_dut(b, mode, &topo, &name, cpu_idle)?;
        let mut measured = if b.cpu_only {
            Ok(())
        } else {
            measure_mode(b, mode, &topo, &name, &mut dut, &mut cells)
        };
        if measured.is_ok() && b.cpu_load_pps > 0.0 {
            // The AF_XDP DUTs again, now sleeping when idle as a gateway
            // does, so the core's idle time is idle (the kernel and
            // boringtun have no such policy: they keep running).
            let restart = !b.cpu_only
                && matches!(
                    mode,
                    GwMode::Forward | GwMode::Gateway | GwMode::GatewaySecure
                );
            if restart {
                stop_dut(&topo, std::mem::take(&mut dut))?;
                dut = start_dut(b, mode, &topo, &name, Some(b.cpu_idle))?;
            }
            measured = measure_cpu(b, mode, &topo, &mut dut, &mut cpu);
        }
        if mode == GwMode::Kernel
            && b.progress
            && let Some(n) = htb_udp_packets(&topo)
        {
            eprintln!("   htb UDP class 1:10 sent {n} packets");
        }
        stop_dut(&topo, dut)?;
        drop(topo);
        measured?;
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
    let cpu_of = |m: GwMode, s: u32| {
        cpu.iter()
            .find(|c| c.mode == m && c.size == s)
            .and_then(|c| c.cpu_ns_per_packet)
    };
    for c in &cpu {
        if !sizes.contains(&c.size) {
            sizes.push(c.size);
        }
    }
    sizes.sort_unstable();
    let ratio = |a: Option<f64>, d: Option<f64>| match (a, d) {
        (Some(a), Some(d)) if d > 0.0 => Some(a / d),
        _ => None,
    };
    let ratios: Vec<Ratio> = sizes
        .iter()
        .map(|&s| Ratio {
            size: s,
            gateway_over_forward: ratio(find(GwMode::Gateway, s), find(GwMode::Forward, s)),
            gateway_over_kernel: ratio(find(GwMode::Gateway, s), find(GwMode::Kernel, s)),
            secure_over_gateway: ratio(find(GwMode::GatewaySecure, s), find(GwMode::Gateway, s)),
            boringtun_over_secure: ratio(
                find(GwMode::Boringtun, s),
                find(GwMode::GatewaySecure, s),
            ),
            cpu_gateway_over_forward: ratio(cpu_of(GwMode::Gateway, s), cpu_of(GwMode::Forward, s)),
        })
        .collect();
    let secure_goal_met = ratios
        .iter()
        .find(|r| r.size == SECURE_GOAL_SIZE)
        .and_then(|r| r.secure_over_gateway)
        .map(|x| x >= SECURE_GOAL);
    Ok(GatewayReport {
        dut_core: b.dut_core,
        gen_core: b.gen_core,
        seconds: b.seconds,
        search_seconds: b.search_seconds,
        loss_tolerance: b.loss_tolerance,
        flows: b.flows,
        overlay_flows: b.overlay_flows,
        flow_pps: b.flow_pps,
        placement: modes
            .iter()
            .map(|&m| (m, m.placement(b.dut_core, b.gen_core)))
            .collect(),
        link_mtu: LINK_MTU,
        skipped,
        cells,
        ratios,
        secure_goal_met,
        cpu_load_pps: b.cpu_load_pps,
        cpu_seconds: b.cpu_seconds,
        cpu_idle: b.cpu_idle,
        cpu_busy: CPU_BUSY,
        cpu,
    })
}

/// Stops what runs the DUT (the in-process dataplane inside its namespace,
/// where its XDP programs are detached).
fn stop_dut(topo: &ForwardTopology, dut: Dut) -> anyhow::Result<()> {
    let Dut {
        dataplane,
        keys,
        boringtun,
    } = dut;
    drop(keys);
    drop(boringtun);
    if let Some(d) = dataplane {
        topo.dut_ns.run_in(move || drop(d.stop()))?;
    }
    Ok(())
}

/// CPU per packet of the DUT core at `b.cpu_load_pps`, every size.
fn measure_cpu(
    b: &GatewayBench,
    mode: GwMode,
    topo: &ForwardTopology,
    dut: &mut Dut,
    out: &mut Vec<GwCpuCell>,
) -> anyhow::Result<()> {
    let addrs = forward_addrs(topo.gen_if().mac.0, topo.dut_in_if().mac.0, INNER_DST);
    for &size in &b.sizes {
        let cfg = GenConfig {
            addrs,
            flows: b.flows,
            sizes: vec![size],
            rate_pps: b.cpu_load_pps,
            poisson: false,
            count: u64::MAX,
            duration: Duration::from_secs_f64(b.cpu_seconds),
            seed: 1,
            progress: false,
        };
        if let Some(k) = dut.keys.as_mut() {
            k.install()?;
        }
        // The core with the DUT idle, just before.
        let bg = crate::cpustat::background(b.dut_core, 1.0);
        let (run, delta) = trial_cpu(topo, b, mode, &cfg, Some(b.dut_core))?;
        let (cost, error) = crate::cpustat::trial_cost(delta, run.received, bg.ok());
        let c = GwCpuCell {
            mode,
            size,
            load_pps: b.cpu_load_pps,
            cpu_ns_per_packet: cost.map(|c| c.cpu_ns_per_packet),
            cost,
            error,
            run,
        };
        if b.progress {
            eprintln!(
                "   CPU {:>5} B at {:.3} Mpps: {}",
                size,
                b.cpu_load_pps / 1e6,
                c.summary()
            );
        }
        out.push(c);
    }
    Ok(())
}

/// Every size of one mode on its running DUT.
fn measure_mode(
    b: &GatewayBench,
    mode: GwMode,
    topo: &ForwardTopology,
    name: &str,
    dut: &mut Dut,
    cells: &mut Vec<GwCell>,
) -> anyhow::Result<()> {
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
        // A fresh key per cell: its send counter is this cell's sealed count.
        let key = match dut.keys.as_mut() {
            Some(k) => Some(k.install()?),
            None => None,
        };
        let before = dut.dataplane.as_ref().map(total_drops).unwrap_or_default();
        let (report, gen_max, bound) = search(topo, b, mode, &cfg)?;
        let dut_drops = dut
            .dataplane
            .as_ref()
            .map(|d| diff(&total_drops(d), &before))
            .unwrap_or_default();
        let overlay = if matches!(mode, GwMode::Gateway | GwMode::GatewaySecure) {
            // The counters are published every 100 ms.
            std::thread::sleep(Duration::from_millis(250));
            overlay_counters(name)
        } else {
            None
        };
        let sealed_packets = match (&dut.keys, key) {
            (Some(k), Some(i)) => k.sealed(i),
            _ => None,
        };
        let pps = report.rx_pps;
        let generator_bound = bound || pps >= 0.9 * gen_max;
        if b.progress {
            eprintln!(
                "   {:>5} B: {:>7.3} Mpps  loss {:>6.3}%  p50 {:>8.1} us  p99 {:>8.1} us  sink foreign {}  DUT drops {:?}",
                size,
                pps / 1e6,
                report.loss * 100.0,
                report.latency_us_p50,
                report.latency_us_p99,
                report.foreign,
                dut_drops
            );
            if let Some(o) = &overlay {
                eprintln!("   gateway flow counters: {o:?}");
            }
            if mode == GwMode::GatewaySecure {
                eprintln!(
                    "   packets sealed with this cell's key (DUT telemetry): {sealed_packets:?}"
                );
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
            sealed_packets,
        });
    }
    Ok(())
}

/// The human table.
pub fn table(r: &GatewayReport) -> String {
    let mut s = format!(
        "gateway benchmark: DUT on core {} (one core: Mpps = Mpps per core), generator+sink on core {}; {} flows (sessions), {} overlay flows at {:.1} Mpps planned each; link MTU {}; throughput search, loss <= {}%\n",
        r.dut_core,
        r.gen_core,
        r.flows,
        r.overlay_flows,
        r.flow_pps / 1e6,
        r.link_mtu,
        r.loss_tolerance * 100.0
    );
    for (m, p) in &r.placement {
        s += &format!("  {:<14} {p}\n", m.name());
    }
    for (m, why) in &r.skipped {
        s += &format!("  {:<14} SKIPPED: {why}\n", m.name());
    }
    s += &format!(
        "{:<14} {:>6} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9}\n",
        "mode", "size", "Mpps", "Gbps", "loss %", "p50 us", "p99 us", "gen max"
    );
    for c in &r.cells {
        let lat = |x: f64| {
            if c.mode.stamped() {
                format!("{x:.1}")
            } else {
                "-".into()
            }
        };
        s += &format!(
            "{:<14} {:>6} {:>9.3} {:>8.2} {:>8.3} {:>10} {:>10} {:>8.3}{}\n",
            c.mode.name(),
            c.size,
            c.mpps,
            c.gbps,
            c.run.loss * 100.0,
            lat(c.run.latency_us_p50),
            lat(c.run.latency_us_p99),
            c.generator_max_pps / 1e6,
            if c.generator_bound { "*" } else { "" }
        );
    }
    let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
    for q in &r.ratios {
        s += &format!(
            "size {:>5}: gateway/forward {}  gateway/kernel {}  gateway-secure/gateway {}  boringtun/gateway-secure {}\n",
            q.size,
            f(q.gateway_over_forward),
            f(q.gateway_over_kernel),
            f(q.secure_over_gateway),
            f(q.boringtun_over_secure)
        );
    }
    if !r.cpu.is_empty() {
        s += &format!(
            "CPU per packet at {:.3} Mpps offered, {:.1} s per trial, AF_XDP DUTs' idle policy: spin {} then {} us sleeps; busy = {}\n",
            r.cpu_load_pps / 1e6,
            r.cpu_seconds,
            r.cpu_idle.spin,
            r.cpu_idle.sleep_us,
            r.cpu_busy
        );
        for c in &r.cpu {
            s += &format!("  {:<14} {:>6} B: {}\n", c.mode.name(), c.size, c.summary());
        }
        for q in &r.ratios {
            if let Some(x) = q.cpu_gateway_over_forward {
                s += &format!(
                    "size {:>5}: CPU per packet gateway/forward {x:.2}\n",
                    q.size
                );
            }
        }
    }
    if let Some(met) = r.secure_goal_met {
        s += &format!(
            "goal (issue 11): gateway-secure/gateway >= {SECURE_GOAL:.2} at {SECURE_GOAL_SIZE} B: {}\n",
            if met { "met" } else { "NOT met" }
        );
    }
    s += "* generator-bound: the figure is a lower bound set by the generator+sink core, not the DUT's limit\n";
    s += "- latency: encrypted modes hide the bench stamp; the sink counts their packets by encapsulation and length\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongate_dataplane::config::SecurityMode;

    fn site(overlay_flows: u16, security: Option<(PathBuf, String)>) -> String {
        BenchSite {
            lan_if: "dut0".into(),
            uplink_if: "dut1".into(),
            local: DUT_SINK_V4,
            peer_gw: SINK_V4,
            peer_mac: [2, 0x6d, 198, 19, 0, 1],
            overlay_flows,
            sessions: 64,
            flow_pps: 10e6,
            security,
        }
        .toml()
    }

    #[test]
    fn site_config_parses() {
        let t = site(64, None);
        let c = Config::from_toml_str(&t, "t.toml").expect("bench site config is valid");
        assert_eq!(c.security.mode, SecurityMode::Off);
        assert_eq!(c.flows.len(), 64);
        assert_eq!(c.peers.len(), 1);
        let plan = c.plan.as_ref().expect("plan");
        assert_eq!(plan.sessions_of(c.class_index("udp").expect("class")), 64);
    }

    #[test]
    fn secure_site_config_parses() {
        let public = encode_key(&[7u8; 32]);
        let t = site(4, Some(("/run/mongate/dut.key".into(), public)));
        let c = Config::from_toml_str(&t, "t.toml").expect("secure bench site config is valid");
        assert_eq!(c.security.mode, SecurityMode::Required);
        assert_eq!(
            c.security.private_key_file.as_deref(),
            Some(Path::new("/run/mongate/dut.key"))
        );
        assert_eq!(c.peers[0].public_key, Some([7u8; 32]));
    }

    #[test]
    fn sink_matches() {
        assert!(GwMode::Gateway.stamped() && GwMode::Kernel.stamped());
        assert!(!GwMode::GatewaySecure.stamped() && !GwMode::Boringtun.stamped());
        assert_eq!(
            GwMode::GatewaySecure.sink_match(512),
            SinkMatch::GeneveSealed { frame_len: 508 }
        );
        assert_eq!(
            GwMode::Boringtun.sink_match(512),
            SinkMatch::WireGuardData {
                port: WIREGUARD_PORT,
                ip_len: 494
            }
        );
    }

    #[test]
    fn key_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = KeyDir::new("test").expect("key dir");
        let f = d.write_secret("k", "x").expect("key file");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&d.0), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert!(d.write_secret("k", "y").is_err(), "O_EXCL");
        let p = d.0.clone();
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn modes_parse() {
        for m in GwMode::ALL {
            assert_eq!(m.name().parse::<GwMode>(), Ok(m));
        }
        assert!("nope".parse::<GwMode>().is_err());
    }
}
