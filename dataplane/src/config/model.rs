//! The validated site configuration. Built only by the loader
//! ([`super::Config::from_toml_str`]), which checks every cross-reference; it
//! serializes back to the same TOML format (round trip).

use core::net::IpAddr;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::Prefix;
use crate::plan::PlanTable;
use crate::wire::ethernet::MacAddr;

/// One site's configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// This site.
    pub site: Site,
    /// Encryption and authentication between gateways.
    pub security: Security,
    /// Local uplinks (at least one).
    pub uplinks: Vec<Uplink>,
    /// The other sites of the overlay.
    pub peers: Vec<Peer>,
    /// Traffic classes, in priority order of their rules.
    pub classes: Vec<TrafficClass>,
    /// Flows (class, route).
    pub flows: Vec<Flow>,
    /// `[metrics]`: the Prometheus text endpoint (`mongate metrics`); `None`
    /// (no table): off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// `[montra]`: the rate controllers' and pacers' tunables (defaults
    /// when the table or a key is absent; written back only when changed).
    #[serde(skip_serializing_if = "Montra::is_default")]
    pub montra: Montra,
    /// The current plan, if the file carries one (the control process
    /// normally supplies it later), resolved and checked at load.
    /// Serialized by id as the `[plan]` table by [`Config::to_toml_string`].
    #[serde(skip)]
    pub plan: Option<PlanTable>,
}

/// The `[metrics]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Address and port the endpoint listens on (TCP), e.g. `127.0.0.1:9464`.
    pub listen: std::net::SocketAddr,
}

/// The `[montra]` table: how this gateway's MONtra controllers and pacers
/// move (docs/config.md, docs/montra.md). Every key is optional; the
/// defaults are the dataplane's ([`crate::overlay::Settings`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Montra {
    /// Largest gain of a flow's controller from 0.9 of its target up, per
    /// second (`ControllerConfig::near_max_gain`): lower is calmer on a
    /// full link, slower to climb to the cap.
    pub near_target_gain: f64,
    /// The climb with no loss, as a fraction of the heaviest flow's target
    /// per second (`Settings::ramp`; sets each plan's kappa).
    pub ramp: f64,
    /// A flow's rate cap, in multiples of its target (`Settings::cap_factor`).
    pub cap_factor: f64,
    /// Rate of each peer's best-effort queue (traffic no plan admits),
    /// Mbit/s of inner frames (`Settings::best_effort_pps` in units of
    /// `rate_unit_bytes`). It is not in the plan: what it takes on a full
    /// link, the planned flows lose.
    pub best_effort_mbps: f64,
}

/// Ranges of the `[montra]` keys (inclusive).
pub const MONTRA_NEAR_TARGET_GAIN: (f64, f64) = (0.01, 100.0);
/// See [`MONTRA_NEAR_TARGET_GAIN`].
pub const MONTRA_RAMP: (f64, f64) = (0.001, 1.0);
/// See [`MONTRA_NEAR_TARGET_GAIN`].
pub const MONTRA_CAP_FACTOR: (f64, f64) = (1.0, 16.0);
/// See [`MONTRA_NEAR_TARGET_GAIN`].
pub const MONTRA_BEST_EFFORT_MBPS: (f64, f64) = (0.01, 100_000.0);

impl Default for Montra {
    fn default() -> Self {
        let s = crate::overlay::Settings::default();
        Self {
            near_target_gain: s.controller.near_max_gain,
            ramp: s.ramp,
            cap_factor: s.cap_factor,
            best_effort_mbps: s.best_effort_pps * f64::from(s.rate_unit_bytes) * 8.0 / 1e6,
        }
    }
}

impl Montra {
    /// True when every key has its default (the table is not written).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
    /// Sets these tunables in a gateway's settings.
    pub fn apply(&self, s: &mut crate::overlay::Settings) {
        s.controller.near_max_gain = self.near_target_gain;
        s.ramp = self.ramp;
        s.cap_factor = self.cap_factor;
        s.best_effort_pps = self.best_effort_mbps * 1e6 / 8.0 / f64::from(s.rate_unit_bytes.max(1));
    }
}

/// This site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Site {
    /// Site name, unique in the overlay; routes refer to it.
    pub name: String,
    /// Overlay id: the GENEVE VNI, 24 bits.
    pub vni: u32,
    /// Interface facing the site's LAN.
    pub lan_interface: String,
    /// The site's own prefixes (IPv4 and/or IPv6), pairwise disjoint.
    pub lan_prefixes: Vec<Prefix>,
    /// Sessions one LAN host (inner source address) may have admitted in
    /// each class at a time (a class's own value overrides it); `None`: no
    /// cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_host: Option<u32>,
    /// A session (admitted or not) idle this long is forgotten and its
    /// admission freed, seconds; `None`: [`DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_idle_timeout_seconds: Option<u32>,
}

/// Idle timeout of a session when `[site] session_idle_timeout_seconds` is absent.
pub const DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS: u32 = 30;
/// Largest `session_idle_timeout_seconds` (one day).
pub const MAX_SESSION_IDLE_TIMEOUT_SECONDS: u32 = 86_400;

impl Site {
    /// The session idle timeout in ns (the default when not set).
    pub fn session_idle_timeout_ns(&self) -> u64 {
        u64::from(
            self.session_idle_timeout_seconds
                .unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS),
        ) * crate::sys::SEC
    }
}

/// Whether packets between gateways are sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// Every packet between gateways is sealed and authenticated; session
    /// keys come from handshakes with the peers' public keys.
    Required,
    /// No encryption, no authentication (`mode = "off"`): a benchmark
    /// baseline and dataplane-only tests. Anyone who can reach an uplink can
    /// inject traffic.
    Off,
}

/// The `[security]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Security {
    /// Sealed or not.
    pub mode: SecurityMode,
    /// This gateway's static X25519 private key (base64), a file only its
    /// owner may read. Required when `mode` is [`SecurityMode::Required`].
    pub private_key_file: Option<PathBuf>,
    /// Start a new handshake this long after the last one (ns).
    pub rekey_after_ns: u64,
    /// Start a new handshake after a key sealed this many packets.
    pub rekey_after_packets: u64,
}

impl Security {
    /// `mode = "off"` with the default rekey values.
    pub fn off() -> Self {
        Self {
            mode: SecurityMode::Off,
            private_key_file: None,
            rekey_after_ns: crate::secure::REKEY_AFTER_SECONDS * crate::sys::SEC,
            rekey_after_packets: crate::secure::REKEY_AFTER_PACKETS,
        }
    }
    /// True when packets between gateways are sealed.
    pub fn required(&self) -> bool {
        self.mode == SecurityMode::Required
    }
}

impl Serialize for Security {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Security", 4)?;
        match self.mode {
            SecurityMode::Off => st.serialize_field("mode", "off")?,
            SecurityMode::Required => st.skip_field("mode")?,
        }
        match &self.private_key_file {
            Some(p) => st.serialize_field("private_key_file", p)?,
            None => st.skip_field("private_key_file")?,
        }
        st.serialize_field(
            "rekey_after_seconds",
            &(self.rekey_after_ns / crate::sys::SEC),
        )?;
        st.serialize_field("rekey_after_packets", &self.rekey_after_packets)?;
        st.end()
    }
}

/// Which I/O backend serves an uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// AF_XDP socket on the interface's queues.
    AfXdp,
    /// io_uring UDP socket.
    IoUring,
}

/// One local uplink.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Uplink {
    /// Name, unique among uplinks.
    pub name: String,
    /// Network interface.
    pub interface: String,
    /// Local (outer source) address.
    pub local_address: IpAddr,
    /// Capacity in Mbit/s (> 0).
    pub capacity_mbps: f64,
    /// MAC of the next hop (AF_XDP writes outer Ethernet headers itself).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_mac")]
    pub gateway_mac: Option<MacAddr>,
    /// Next-hop address (same family as `local_address`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    /// I/O backend.
    pub backend: Backend,
}

/// Another site of the overlay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Peer {
    /// Site name, unique, not this site's name.
    pub name: String,
    /// Its LAN prefixes; disjoint from every other site's.
    pub prefixes: Vec<Prefix>,
    /// Its gateway addresses (outer destinations), typically one per uplink of
    /// that site; at least one, no duplicates.
    pub gateways: Vec<IpAddr>,
    /// Its gateway's static X25519 public key (required when security is).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_key")]
    pub public_key: Option<[u8; 32]>,
}

/// What happens to sessions of a class beyond the plan's admitted count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Forward them at the lowest priority, outside the plan.
    BestEffort,
    /// Drop their packets.
    Drop,
}

/// A traffic class: (source site, destination site, type) plus the rules
/// that recognise its packets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficClass {
    /// Id, unique among classes.
    pub id: String,
    /// Source site name.
    pub source: String,
    /// Destination site name (differs from the source).
    pub destination: String,
    /// Free-form type label (e.g. `video`, `telemetry`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Admission overflow action.
    pub overflow: Overflow,
    /// Sessions one LAN host may have admitted in this class at a time
    /// (overrides `[site] max_sessions_per_host`); sessions beyond it take
    /// the overflow action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_host: Option<u32>,
    /// Classification rules; a packet belongs to the class of the first rule
    /// (in file order, across classes) it matches.
    pub rules: Vec<Rule>,
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (>= `lo`).
    pub hi: u16,
}

impl PortRange {
    /// True when `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.collect_str(&format_args!("{}-{}", self.lo, self.hi))
        }
    }
}

/// One classification rule. Absent fields match anything.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Inner destination prefixes; empty = the destination site's prefixes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dst_prefixes: Vec<Prefix>,
    /// IP protocol number (from `"tcp"`, `"udp"`, `"icmp"`, `"icmpv6"`,
    /// `"sctp"` or a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Inner source ports (TCP, UDP or SCTP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ports: Option<PortRange>,
    /// Inner destination ports (TCP, UDP or SCTP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_ports: Option<PortRange>,
    /// DSCP values (0..=63); empty = any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dscp: Vec<u8>,
}

/// A flow: a class's traffic on one overlay route.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flow {
    /// Id, unique among flows.
    pub id: String,
    /// Class id.
    pub class: String,
    /// Site names from the class's source to its destination (no repeats).
    pub route: Vec<String>,
}

fn ser_key<S: Serializer>(k: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_str(&super::key::encode_key(k)),
        None => s.serialize_none(),
    }
}

fn ser_mac<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.collect_str(m),
        None => s.serialize_none(),
    }
}

impl Config {
    /// All site names: this site first, then the peers in file order.
    pub fn site_names(&self) -> impl Iterator<Item = &str> {
        core::iter::once(self.site.name.as_str()).chain(self.peers.iter().map(|p| p.name.as_str()))
    }
    /// The prefixes of a site (this one or a peer).
    pub fn site_prefixes(&self, name: &str) -> Option<&[Prefix]> {
        if name == self.site.name {
            return Some(&self.site.lan_prefixes);
        }
        self.peers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.prefixes.as_slice())
    }
    /// Index of a class by id.
    pub fn class_index(&self, id: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.id == id)
    }
    /// The per-host session cap of class `c` (index): the class's own, else
    /// the site's; `None`: no cap.
    pub fn host_cap(&self, c: usize) -> Option<u32> {
        self.classes
            .get(c)
            .and_then(|k| k.max_sessions_per_host)
            .or(self.site.max_sessions_per_host)
    }
    /// Index of a flow by id.
    pub fn flow_index(&self, id: &str) -> Option<usize> {
        self.flows.iter().position(|f| f.id == id)
    }
    /// Serializes to the TOML file format.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        #[derive(Serialize)]
        struct PlanTableOf {
            plan: crate::plan::PlanFile,
        }
        let mut s = toml::to_string(self)?;
        if let Some(p) = &self.plan {
            s.push('\n');
            s.push_str(&toml::to_string(&PlanTableOf {
                plan: p.to_file(self),
            })?);
        }
        Ok(s)
    }
}
