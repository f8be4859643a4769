//! mongate-bench: a line-rate traffic generator and sink on the mongate
//! engine, and the forwarding benchmark that compares our AF_XDP and
//! io_uring forwarders with the Linux kernel on the same topology.

pub mod forward;
pub mod loadgen;
pub mod payload;
pub mod sink;
