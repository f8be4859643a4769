//! PFO, the Predictive Flow Optimizer: admits `n_c` sessions per class and splits their rate
//! over routes to maximise mission utility, with a proven bound (see `docs/pfo.md`).
//!
//! - [`instance`]: file format and validation;
//! - [`utility`]: utility functions and their certified piecewise-linear forms;
//! - [`envelope`]: the per-class envelope `h_c(Y) = max_n n U(Y/n)`;
//! - [`solver`]: the exact MILP solver (HiGHS), duals, mapping (its primal heuristic, an LP
//!   dive on the envelope relaxation, is in `heuristic.rs`);
//! - [`solution`]: the result format;
//! - [`oracle`]: brute force for tiny instances (test oracle);
//! - [`generator`]: Topology Zoo GraphML reader and seeded benchmark instances.

pub mod envelope;
pub mod generator;
#[cfg(feature = "solver")]
mod heuristic;
pub mod instance;
#[cfg(feature = "solver")]
pub mod oracle;
pub mod solution;
#[cfg(feature = "solver")]
pub mod solver;
pub mod utility;

pub use instance::{Instance, InstanceError, InstanceFile, InstanceProblem};
pub use solution::{Solution, Status};
#[cfg(feature = "solver")]
pub use solver::{Formulation, SolveOptions, solve};
pub use utility::UtilitySpec;
