//! Emulated sites in Linux network namespaces, for mongate's integration
//! tests, benchmarks and demo.
//!
//! * [`Netns`]: a namespace guard that always cleans up (processes too);
//!   [`sweep_stale`] removes leftovers of crashed runs.
//! * [`link`]: veth pairs, addresses, routes, static neighbours, offloads,
//!   link up/down, blackholes and `tc` shaping.
//! * [`topology`]: [`ForwardTopology`] (gen — dut — sink) and [`Sites`]
//!   (LAN hosts, gateways, shaped WAN links; [`Sites::triangle`]).
//! * [`capture`]: raw frames on an interface (AF_PACKET send past the
//!   qdisc, capture threads); [`traffic`]: countable UDP and TCP between
//!   hosts; [`tshark`]: dumpcap captures checked by tshark's dissectors.
//! * [`fresh`]: whether the workspace binaries the tests run are older than
//!   their sources.
//!
//! This is test tooling: it shells out to `ip`, `tc` and `ethtool`
//! (iproute2/ethtool) and turns failed commands into errors carrying their
//! stderr. It needs root. See `docs/testbed.md` for the address plan.

#![deny(unsafe_code)]

pub mod addr;
#[allow(unsafe_code)]
pub mod capture;
pub mod cli;
mod cmd;
pub mod error;
pub mod fresh;
pub mod link;
#[allow(unsafe_code)]
pub mod netns;
pub mod topology;
pub mod traffic;
pub mod tshark;

pub use addr::{Mac, V4, V6};
pub use cmd::have_program;
pub use error::{Error, Result};
pub use netns::{
    DEFAULT_PREFIX, Netns, NsChild, list_with_prefix, remove_owned, sweep_stale, unavailable_reason,
};
pub use topology::forward::ForwardTopology;
pub use topology::overlay::{ClassSpec, FlowSpec, OverlaySpec, PlanSpec, RuleSpec, SiteKey};
pub use topology::sites::{SiteSpec, Sites, SitesTopology, WanLinkSpec};
