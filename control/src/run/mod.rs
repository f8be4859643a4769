//! `mongate-control run`: the control loop (see `docs/control-loop.md`).
//!
//! - [`site`]: matching the organisation-wide PFO instance with the site configuration;
//! - [`telemetry`]: per-worker telemetry book-keeping and estimation windows;
//! - [`estimator`]: link capacity estimates from MONtra telemetry, failed-link marks;
//! - [`planner`]: the pure decision core (when to re-plan, with what);
//! - [`source`]: where plans come from ([`PlanSource`]; the local PFO solver, [`PfoSource`]),
//!   as the dataplane's [`mongate_dataplane::plan::PlanTable`];
//! - the MONET path manager's driver (probes, assignments): [`crate::failover::driver`];
//! - [`log`]: plan and event log lines (text or JSON);
//! - [`status_file`]: the last plan as `<run dir>/<name>.plan` for `mongate status` and metrics;
//! - [`io`]: the thin loop over the shared-memory control region.

pub mod estimator;
pub mod io;
pub mod log;
pub mod planner;
pub mod site;
pub mod source;
pub mod status_file;
pub mod telemetry;

pub use estimator::{Estimator, EstimatorConfig};
pub use io::{ControlEvent, ReloadSource, RunOptions, RunSummary, run};
pub use log::{LogRecord, LogSink, stdout_sink};
pub use planner::{Planner, PlannerConfig, SolveRequest, Trigger};
pub use site::{MatchError, SiteMap};
pub use source::{PfoSource, PlanSource, SourcedPlan, plan_from_solution};
pub use status_file::{
    PlanStatus, plan_status, plan_status_path, read_plan_status, write_plan_status,
};

#[cfg(test)]
pub(crate) mod tests;
