//! The file as serde reads it: every leaf keeps its byte span so that
//! validation errors can name the line. Converted to the model by
//! [`super::validate`].

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub site: S<RawSite>,
    pub security: Option<S<RawSecurity>>,
    #[serde(default)]
    pub uplinks: Vec<S<RawUplink>>,
    #[serde(default)]
    pub peers: Vec<S<RawPeer>>,
    #[serde(default)]
    pub classes: Vec<S<RawClass>>,
    #[serde(default)]
    pub flows: Vec<S<RawFlow>>,
    pub metrics: Option<S<RawMetrics>>,
    pub montra: Option<S<RawMontra>>,
    pub plan: Option<S<RawPlan>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMontra {
    // Numbers, integer or float (`cap_factor = 2` as well as `2.0`).
    pub near_target_gain: Option<S<toml::Value>>,
    pub ramp: Option<S<toml::Value>>,
    pub cap_factor: Option<S<toml::Value>>,
    pub best_effort_mbps: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub name: S<String>,
    pub vni: S<i64>,
    pub lan_interface: S<String>,
    #[serde(default)]
    pub lan_prefixes: Vec<S<String>>,
    pub max_sessions_per_host: Option<S<i64>>,
    pub session_idle_timeout_seconds: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub mode: Option<S<String>>,
    pub private_key_file: Option<S<String>>,
    pub rekey_after_seconds: Option<S<i64>>,
    pub rekey_after_packets: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    pub name: S<String>,
    pub interface: S<String>,
    pub local_address: S<String>,
    pub capacity_mbps: S<f64>,
    pub gateway_mac: Option<S<String>>,
    pub next_hop: Option<S<String>>,
    pub backend: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub name: S<String>,
    #[serde(default)]
    pub prefixes: Vec<S<String>>,
    pub gateways: Option<S<Vec<S<String>>>>,
    pub public_key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClass {
    pub id: S<String>,
    pub source: S<String>,
    pub destination: S<String>,
    #[serde(rename = "type")]
    pub kind: S<String>,
    pub overflow: S<String>,
    pub max_sessions_per_host: Option<S<i64>>,
    pub rules: Option<S<Vec<S<RawRule>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default)]
    pub dst_prefixes: Vec<S<String>>,
    pub protocol: Option<S<toml::Value>>,
    pub src_ports: Option<S<toml::Value>>,
    pub dst_ports: Option<S<toml::Value>>,
    #[serde(default)]
    pub dscp: Vec<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlow {
    pub id: S<String>,
    pub class: S<String>,
    pub route: S<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    pub epoch: S<i64>,
    #[serde(default)]
    pub classes: Vec<S<RawPlanClass>>,
    #[serde(default)]
    pub flows: Vec<S<RawPlanFlow>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlanClass {
    pub id: S<String>,
    pub sessions: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlanFlow {
    pub id: S<String>,
    pub rate_mbps: S<f64>,
    pub weight: S<f64>,
    #[serde(default)]
    pub floored: Option<S<bool>>,
}
