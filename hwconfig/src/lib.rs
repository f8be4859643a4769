//! mongate-hwconfig: discover NIC queues, IRQs, cores, NUMA and hugepages,
//! plan worker/queue/IRQ placement, and apply it.
//!
//! - [`parse`]: pure parsers for sysfs/procfs text.
//! - [`discover`]: reads the host and interfaces ([`discover::NicInfo`], [`discover::HostInfo`]).
//! - [`xdp`]: which drivers support native XDP and AF_XDP zero-copy.
//! - [`plan`]: the [`DeploymentPlan`] (read by `mongate-dataplane` via [`plan_from_toml`]).
//! - [`apply`]: turns a plan into actions (dry-run by default) and performs them.
//! - [`cli_generate`]: `--generate man|complete-bash|...` for every binary of the workspace
//!   (here because every binary depends on this crate).

#![deny(unsafe_code)]

pub mod apply;
pub mod cli_generate;
#[allow(unsafe_code)]
pub mod discover;
pub mod error;
pub mod parse;
pub mod plan;
pub mod xdp;

pub use error::HwError;
pub use plan::{
    DeploymentPlan, PlanRequest, QueueAssignment, WorkerPlan, make_plan, plan_from_str,
    plan_from_toml,
};
pub use xdp::XdpMode;
