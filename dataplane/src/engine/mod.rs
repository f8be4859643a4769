//! The engine's vocabulary: packets are descriptors into a frame arena owned by
//! one worker; ports move batches of descriptors in and out; stages decide what
//! happens to each packet.
//!
//! Every port presents whole Ethernet frames, whatever its backend: an io_uring
//! UDP port writes a synthetic outer Ethernet/IP/UDP header in front of each
//! datagram it receives, and strips it (using its addresses as the destination)
//! when sending. One pipeline therefore serves AF_XDP and io_uring alike.

mod arena;
mod batch;
mod packet;

pub use arena::{Arena, ArenaError, FramePool};
pub use batch::{BATCH_SIZE, Batch};
pub use packet::{DropReason, HANDOFF_NO_FLOW, Packet, Verdict};

/// The stages' time: [`crate::sys::clock::Nanos`] (read with
/// [`crate::sys::clock::now_ns`]).
pub use crate::sys::clock::Nanos;

/// An I/O endpoint owned by one worker: an AF_XDP socket bound to one
/// (interface, queue), or an io_uring UDP socket.
pub trait Port {
    /// Receives up to `out.spare()` packets, appending them to `out` with
    /// `port` set to this port's index. Frames come from `pool` (already handed
    /// to the kernel earlier). Returns how many were received.
    fn recv(&mut self, arena: &mut Arena, pool: &mut FramePool, out: &mut Batch) -> usize;

    /// Queues the packets of `pkts` whose verdict is `Verdict::Tx(this port)` for
    /// transmission and kicks the kernel once for the whole batch. A packet the
    /// port refuses gets `Verdict::Drop(reason)` (ring full, unsendable
    /// header) and stays the caller's to count and free; packets still
    /// `Tx(this port)` afterwards were queued. Returns `(sent, dropped)`.
    fn send(
        &mut self,
        arena: &mut Arena,
        pool: &mut FramePool,
        pkts: &mut [Packet],
    ) -> (usize, usize);

    /// Housekeeping once per loop: reap transmit completions into `pool`,
    /// refill the kernel's receive buffers from `pool`.
    fn maintain(&mut self, pool: &mut FramePool);

    /// Name for logs and counters, e.g. `veth0/q1 (af_xdp native copy)`.
    fn name(&self) -> &str;

    /// The kernel's own drop counters for this port, cumulative (a syscall:
    /// the worker reads them a few times per second, not per packet).
    fn kernel_drops(&self) -> Option<KernelDrops> {
        None
    }
}

/// Packets the kernel dropped before they reached a port's ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelDrops {
    /// Dropped on receive (AF_XDP: no fill buffer or ring room; UDP: socket buffer full).
    pub rx_dropped: u64,
    /// Times the receive ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub fill_empty: u64,
}

/// A pipeline stage. It sets each packet's verdict (and may rewrite its bytes
/// or move its start into the headroom); it may hold packets (`Verdict::Held`)
/// and release them later from [`Stage::poll`].
pub trait Stage {
    /// Decides the fate of every packet in `batch`.
    fn process(&mut self, now: Nanos, arena: &mut Arena, batch: &mut Batch);

    /// Appends packets that became due (e.g. paced departures) to `out`.
    /// Default: holds nothing.
    fn poll(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        let _ = (now, arena, out);
    }

    /// Housekeeping once per worker loop, with the worker's frame pool: a
    /// stage that originates packets (acks, probe echoes, ICMP) refills its
    /// private frame reserve here. Default: nothing.
    fn maintain(&mut self, pool: &mut FramePool) {
        let _ = pool;
    }
}
