//! mongate control process: the PFO optimizer and the PFO -> MONtra mapping, MONET path
//! selection and failover (`failover`), and the control loop that drives a dataplane (`run`).

#![forbid(unsafe_code)]

pub mod check;
pub mod failover;
pub mod fuzz;
pub mod mapping;
pub mod pfo;
#[cfg(feature = "solver")]
pub mod run;
pub mod secure;
