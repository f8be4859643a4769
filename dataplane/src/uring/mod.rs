//! io_uring UDP ports: for hosts or uplinks where AF_XDP is not possible (e.g.
//! behind a NAT'd uplink) and as a baseline in benchmarks.
//!
//! One [`UringPort`] per worker: its own io_uring and its own UDP socket, all
//! workers sharing the address with SO_REUSEPORT (the kernel spreads flows).
//!
//! - Receive: a provided-buffer ring (IORING_REGISTER_PBUF_RING) whose buffers
//!   are frames of the worker's [`crate::engine::Arena`] (buffer id = frame
//!   index), and one multishot `recvmsg` that learns each datagram's source. It
//!   is re-armed whenever the kernel ends it (no `IORING_CQE_F_MORE`), e.g. with
//!   ENOBUFS when the buffer ring ran dry. Each datagram is presented as a whole
//!   Ethernet frame: a synthetic Ethernet + IPv4/IPv6 + UDP header (src = the
//!   datagram's source, dst = the socket's address) is written in the frame in
//!   front of the payload, which is never copied. The UDP checksum is left zero.
//! - Send: the outer Ethernet/IP/UDP header the pipeline left in front of a
//!   packet gives the destination; the UDP payload goes out with `SendMsg` from a
//!   preallocated slot (msghdr + iovec + sockaddr), the whole batch in one
//!   `submit`. Frames return to the pool when their send completes.
//! - The ring is set up with SINGLE_ISSUER + DEFER_TASKRUN + TASKRUN_FLAG by
//!   default: the port enters the kernel only when it has something to submit or
//!   the kernel flagged pending completion work. SQPOLL is off unless asked.
//!
//! Layout: [`headers`] (pure: synthetic header, outer parser, sockaddr bytes),
//! `socket` (socket options), `buf_ring` (the provided-buffer ring memory),
//! `port` (the [`crate::engine::Port`] implementation), [`mmsg`] (a plain
//! `recvmmsg`/`sendmmsg` loop: the benchmark baseline and a traffic generator).

mod buf_ring;
pub mod headers;
pub mod mmsg;
mod port;
mod socket;

use std::net::SocketAddr;

pub use port::UringPort;

/// Configuration of one [`UringPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UringConfig {
    /// Local address to bind (port 0: any free port, see [`UringPort::local_addr`]).
    /// IPv6 sockets are IPV6_V6ONLY.
    pub local: SocketAddr,
    /// Bind the socket to this device (SO_BINDTODEVICE).
    pub device: Option<String>,
    /// This port's index in its worker (`Packet::port`, `Verdict::Tx`).
    pub index: u16,
    /// Provided buffers (frames) kept posted for receive: a power of two,
    /// at most 32768 and at most the arena's frames.
    pub ring_entries: u16,
    /// Buffer group id of the provided-buffer ring (unique per io_uring).
    pub buf_group: u16,
    /// Sends in flight at most (preallocated slots).
    pub send_slots: u32,
    /// Submission queue entries.
    pub sq_entries: u32,
    /// SO_SNDBUF, and SO_RCVBUF unless `rcvbuf_bytes` says otherwise, in
    /// bytes (SO_*BUFFORCE is tried first, which needs CAP_NET_ADMIN;
    /// otherwise `net.core.[rw]mem_max` caps it).
    pub socket_buf_bytes: u32,
    /// SO_RCVBUF alone (see [`RxQueue`]). A send buffer stays large: on veth
    /// and loopback a sent datagram is charged to the sending socket until
    /// the receiver frees it, so a small one stalls sends on a slow receiver.
    pub rcvbuf_bytes: Option<u32>,
    /// Use a kernel SQ polling thread with this idle time (ms). Off by default.
    pub sqpoll_idle_ms: Option<u32>,
    /// SINGLE_ISSUER + DEFER_TASKRUN (default); otherwise COOP_TASKRUN.
    pub defer_taskrun: bool,
    /// Send with IORING_OP_SEND + destination address (sendto, Linux >= 6.0)
    /// instead of IORING_OP_SENDMSG (the default): no msghdr for the kernel to
    /// copy and import per packet.
    pub send_to: bool,
}

impl UringConfig {
    /// Defaults for a port bound to `local` with index `index`: 4096 receive
    /// buffers, 1024 send slots, 256 SQ entries, 8 MiB socket buffers.
    pub fn new(local: SocketAddr, index: u16) -> Self {
        Self {
            local,
            device: None,
            index,
            ring_entries: 4096,
            buf_group: 0,
            send_slots: 1024,
            sq_entries: 256,
            socket_buf_bytes: 8 << 20,
            rcvbuf_bytes: None,
            sqpoll_idle_ms: None,
            defer_taskrun: true,
            send_to: false,
        }
    }
}

/// Bytes the kernel charges a socket's receive buffer for one small datagram
/// (its skb's `truesize`): measured 832 for an 18-byte UDP payload (a 64-byte
/// frame) over loopback on Linux 6.18; 1280 at 470 bytes, 2304 at 1458.
pub const SMALL_DATAGRAM_TRUESIZE: u32 = 832;

/// How many received datagrams a port may hold before the pipeline sees
/// them: [`UringConfig::ring_entries`] and [`UringConfig::rcvbuf_bytes`]
/// for a bound in packets.
///
/// Every datagram held is queueing delay for the ones behind it. A port that
/// can hold far more than its worker relays in a few milliseconds turns an
/// overload into that much delay instead of loss: 8 MiB socket buffers and
/// 8192 provided buffers held up to ~300 ms of a relay's 0.09 Mpps, so a load 20 %
/// above what the relay sustains passed a one-second zero-loss trial with a
/// median latency of 85 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxQueue {
    /// Provided buffers: datagrams handed to the kernel's buffer ring or
    /// reaped and not yet delivered, together, never exceed this.
    pub ring_entries: u16,
    /// SO_RCVBUF: the kernel doubles it and then accepts datagrams until
    /// their `truesize` sum exceeds it.
    pub socket_buf_bytes: u32,
}

impl RxQueue {
    /// At most about `2 x packets` datagrams held: `packets` (rounded down to
    /// a power of two, within 16..=32768) in the buffer ring, and a socket
    /// buffer for about `packets` small ones (fewer large ones: ~0.36 x at
    /// 1500 bytes). The socket buffer holds what arrives while the worker is
    /// busy between two entries into the kernel (one loop turn, or a re-arm
    /// after the ring ran dry); a smaller one loses packets the ring had room for.
    pub fn for_packets(packets: u32) -> Self {
        let p = packets.clamp(16, 32768);
        // Largest power of two <= p: 16..=32768 fits a u16.
        let ring = 1u32 << (31 - p.leading_zeros());
        let bytes = u64::from(p) * u64::from(SMALL_DATAGRAM_TRUESIZE) / 2;
        Self {
            ring_entries: u16::try_from(ring).unwrap_or(32768),
            socket_buf_bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        }
    }

    /// Applies the bounds to `cfg`.
    pub fn apply(self, cfg: &mut UringConfig) {
        cfg.ring_entries = self.ring_entries;
        cfg.rcvbuf_bytes = Some(self.socket_buf_bytes);
    }
}

/// Counters kept by a port (plain integers: the port is single-threaded; the
/// worker copies them into shared-memory stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringCounters {
    /// Datagrams delivered to the pipeline.
    pub rx_packets: u64,
    /// Payload bytes delivered.
    pub rx_bytes: u64,
    /// Datagrams dropped on receive (truncated: larger than a frame's room, or
    /// an unknown source address family).
    pub rx_dropped: u64,
    /// Sends completed successfully.
    pub tx_packets: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Multishot receives ended by ENOBUFS (buffer ring empty).
    pub enobufs: u64,
    /// Multishot receives armed (the first arm included).
    pub rearms: u64,
    /// Sends completed with an error.
    pub send_errors: u64,
    /// Packets dropped on send: malformed or unsupported outer header.
    pub tx_malformed: u64,
    /// Packets dropped on send: no free send slot / SQ full.
    pub tx_full: u64,
    /// Receive completions with an error other than ENOBUFS / ECANCELED.
    pub recv_errors: u64,
    /// `io_uring_enter` failures.
    pub submit_errors: u64,
}

/// Errors creating a [`UringPort`].
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// A system call failed.
    #[error("uring port: {what}: {err}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// Configuration does not fit the arena or the kernel's limits.
    #[error("uring port: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_queue_rounds_ring_down_to_a_power_of_two() {
        let q = RxQueue::for_packets(256);
        assert_eq!(q.ring_entries, 256);
        assert_eq!(q.socket_buf_bytes, 256 * SMALL_DATAGRAM_TRUESIZE / 2);
        // The kernel doubles SO_RCVBUF: about 256 small datagrams fit.
        assert_eq!(2 * q.socket_buf_bytes / SMALL_DATAGRAM_TRUESIZE, 256);
        let q = RxQueue::for_packets(300);
        assert_eq!(q.ring_entries, 256);
        assert_eq!(q.socket_buf_bytes, 300 * SMALL_DATAGRAM_TRUESIZE / 2);
    }

    #[test]
    fn rx_queue_is_clamped() {
        let small = RxQueue::for_packets(0);
        assert_eq!(small.ring_entries, 16);
        assert_eq!(small.socket_buf_bytes, 16 * SMALL_DATAGRAM_TRUESIZE / 2);
        let big = RxQueue::for_packets(u32::MAX);
        assert_eq!(big.ring_entries, 32768);
        assert_eq!(big.socket_buf_bytes, 32768 * SMALL_DATAGRAM_TRUESIZE / 2);
        for p in [1, 17, 1000, 4096, 40_000] {
            let q = RxQueue::for_packets(p);
            assert!(q.ring_entries.is_power_of_two(), "{p}: {q:?}");
            assert!(u32::from(q.ring_entries) <= p.max(16), "{p}: {q:?}");
        }
    }

    #[test]
    fn rx_queue_applies_to_a_config() {
        let mut c = UringConfig::new("127.0.0.1:0".parse().unwrap(), 0);
        RxQueue::for_packets(1024).apply(&mut c);
        assert_eq!(c.ring_entries, 1024);
        assert_eq!(c.rcvbuf_bytes, Some(1024 * SMALL_DATAGRAM_TRUESIZE / 2));
        assert_eq!(c.socket_buf_bytes, 8 << 20, "the send buffer stays");
    }
}
