//! mongate control process: the PFO optimizer and the PFO -> MONtra mapping.
//! (MONET path selection will live in `paths`.)

pub mod mapping;
pub mod paths;
pub mod pfo;
