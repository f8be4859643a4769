//! AF_XDP: sockets bound to one (interface, queue), a UMEM shared by all the
//! sockets of a worker (so a frame received on the LAN is sent on the WAN with
//! no copy), and the four rings driven by [`crate::ring`].
//!
//! Written on `libc` rather than an AF_XDP crate: the ring layer is the same
//! verified primitive the control <-> dataplane rings use, there is no C
//! dependency (no libbpf/libxdp), and the licence stays ours (xdpilone is
//! EUPL-1.2). See docs/architecture.md.

mod socket;
pub(crate) mod sys;

pub use socket::{AfXdpConfig, AfXdpError, AfXdpPort, AfXdpStats, BindMode};
pub use sys::XdpStatistics;
