//! mongate control process: the PFO optimizer and the PFO -> MONtra mapping, MONET path
//! selection (`paths`), and the control loop that drives a dataplane (`run`).

#![forbid(unsafe_code)]

pub mod mapping;
pub mod paths;
pub mod pfo;
pub mod run;
