//! mongate-bench: a line-rate traffic generator and sink on the mongate
//! engine, and the forwarding benchmark that compares our AF_XDP and
//! io_uring forwarders with the Linux kernel on the same topology; and
//! `linkem`, a WAN link emulator (rate, delay, jitter, loss) on AF_XDP;
//! `attack`, a hostile host on a WAN segment (forged, replayed, oversized);
//! `pipeline`, the gateway's per-packet work without I/O; `cpustat`, CPU
//! ns per packet of one core from `/proc/stat`.

#![deny(unsafe_code)]

pub mod attack;
pub mod cpustat;
pub mod forward;
pub mod gateway;
#[allow(unsafe_code)]
pub mod linkem;
pub mod loadgen;
pub mod pacing;
pub mod payload;
pub mod pipeline;
pub mod sink;
