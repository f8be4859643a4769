//! [`UringPort`]: one io_uring instance and one UDP socket per worker.
//!
//! Frame layout (offsets inside one arena frame, `P` = payload offset):
//!
//! ```text
//! 0 .. headroom            free for encapsulation pushed by stages
//! P - 62 / P - 42 ..  P    synthetic Ethernet + IPv6 / IPv4 + UDP header (written on receive)
//! P - 44 .. P              what the kernel writes first: io_uring_recvmsg_out (16) + name area (28)
//! P ..                     the datagram payload, never copied
//! ```
//!
//! `P = round_up(headroom + 62, 4)`: the synthetic header always fits after the
//! headroom, and the IP header is 4-byte aligned (Ethernet starts at 2 mod 4).
//! The provided buffer starts at `P - 44`; the recvmsg header and source address
//! are read before the synthetic header overwrites them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::buf_ring::BufRing;
use super::headers::{
    MAX_SYNTH_LEN, SOCKADDR_LEN, decode_sockaddr, encode_sockaddr, parse_outer, synth_len,
    to_socket_family, write_synthetic,
};
use super::socket::open_udp;
use super::{UringConfig, UringCounters, UringError};
use crate::engine::{Arena, Batch, DropReason, FramePool, Packet, Port, Verdict};
use crate::sys::clock::now_ns;

/// Size of `struct io_uring_recvmsg_out` (namelen, controllen, payloadlen, flags).
const RECVMSG_OUT_LEN: usize = 16;
/// Bytes the kernel writes before the payload in each provided buffer.
const RECV_PREFIX: usize = RECVMSG_OUT_LEN + SOCKADDR_LEN;
/// [`RECV_PREFIX`] as a u32 (44).
const RECV_PREFIX_U32: u32 = 44;
const _: () = assert!(RECV_PREFIX_U32 as usize == RECV_PREFIX);
/// `msg_namelen` of the multishot receive: room for a `sockaddr_in6`.
const NAME_AREA: libc::socklen_t = 28;
const _: () = assert!(NAME_AREA as usize == SOCKADDR_LEN);
/// MSG_TRUNC as the flags word of `io_uring_recvmsg_out` carries it.
const MSG_TRUNC: u32 = 0x20;
const _: () = assert!(MSG_TRUNC.cast_signed() == libc::MSG_TRUNC);
/// user_data of the multishot receive.
const UD_RECV: u64 = 1 << 63;
/// user_data of the cancel request issued on shutdown.
const UD_CANCEL: u64 = (1 << 63) | 1;

/// One in-flight send: the kernel reads `hdr`, `iov` and `name` until the send
/// completes, so slots live in a boxed slice that never moves.
#[repr(C)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: [u8; SOCKADDR_LEN],
    /// Arena offset of the frame being sent (returned to the pool on completion).
    frame: u64,
}

/// A received datagram whose completion was reaped but not yet delivered.
#[derive(Clone, Copy, Default)]
struct Stashed {
    bid: u16,
    res: i32,
}

/// Everything but the io_uring itself, so completions can be handled while the
/// completion queue is borrowed.
struct State {
    index: u16,
    v6: bool,
    local: SocketAddr,
    frame_size: u32,
    arena_base: NonNull<u8>,
    arena_size: usize,
    /// Payload offset `P` inside a frame.
    payload_off: u32,
    /// Provided-buffer length (`frame_size - (P - RECV_PREFIX)`).
    buf_len: u32,
    ring_entries: u32,
    /// Descriptors given to the kernel and not yet seen in a completion.
    in_ring: u32,
    /// One bit per arena frame: currently owned by the kernel's buffer ring.
    kernel_owned: Vec<u64>,
    stash: Box<[Stashed]>,
    stash_head: usize,
    stash_len: usize,
    recv_armed: bool,
    slots: Box<[SendSlot]>,
    free_slots: Vec<u32>,
    counters: UringCounters,
}

/// An io_uring UDP port: see the [module documentation](super).
pub struct UringPort {
    // Field order is drop order: the ring (and its registrations) goes first.
    ring: IoUring,
    buf_ring: BufRing,
    socket: OwnedFd,
    recv_hdr: Box<libc::msghdr>,
    st: State,
    name: String,
    buf_group: u16,
    /// IORING_OP_SEND with a destination address instead of SENDMSG.
    send_to: bool,
    shut: bool,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> UringError {
    move |err| UringError::Io { what, err }
}

/// A zeroed `msghdr` (all-null pointers, zero lengths).
fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct of pointers and integers, for which
    // all-zero bytes are a valid (empty) value.
    unsafe { std::mem::zeroed() }
}

/// Creates the ring; returns it with a short description of its mode.
fn build_ring(cfg: &UringConfig, sq: u32, cq: u32) -> io::Result<(IoUring, &'static str)> {
    let mut b = IoUring::builder();
    b.setup_cqsize(cq).setup_clamp();
    let mode = if let Some(idle) = cfg.sqpoll_idle_ms {
        b.setup_sqpoll(idle);
        "sqpoll"
    } else if cfg.defer_taskrun {
        b.setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag();
        "defer_taskrun"
    } else {
        b.setup_coop_taskrun().setup_taskrun_flag();
        "coop_taskrun"
    };
    match b.build(sq) {
        Ok(r) => Ok((r, mode)),
        // Older kernels: fall back to a plain ring (task work then runs on any return to user space).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            IoUring::builder()
                .setup_cqsize(cq)
                .setup_clamp()
                .build(sq)?,
            "plain",
        )),
        Err(e) => Err(e),
    }
}

impl UringPort {
    /// Opens the socket, creates the ring, registers a provided-buffer ring over
    /// frames of `arena`, fills it from `pool` and arms the multishot receive.
    ///
    /// With `defer_taskrun` (the default) the ring accepts submissions from the
    /// creating thread only: create the port on the worker thread that runs it.
    ///
    /// # Safety
    ///
    /// `arena` must outlive the port (the kernel writes received datagrams into
    /// its frames until the port is dropped), and every later call must pass
    /// this same arena and a pool over its frames. Drop the port before the arena.
    pub unsafe fn new(
        cfg: &UringConfig,
        arena: &Arena,
        pool: &mut FramePool,
    ) -> Result<Self, UringError> {
        let frame_size = arena.frame_size();
        if arena.frames() > 1 << 16 {
            return Err(UringError::Config(format!(
                "arena has {} frames; buffer ids are 16-bit (max 65536)",
                arena.frames()
            )));
        }
        let payload_off = (arena.headroom() as usize + MAX_SYNTH_LEN).next_multiple_of(4);
        let buf_start = payload_off - RECV_PREFIX;
        if payload_off + 64 > frame_size as usize {
            return Err(UringError::Config(format!(
                "headroom {} leaves no room for payload",
                arena.headroom()
            )));
        }
        let entries = cfg.ring_entries;
        if !entries.is_power_of_two() || entries > 32768 || u32::from(entries) > arena.frames() {
            return Err(UringError::Config(format!(
                "ring_entries {entries} must be a power of two <= min(32768, arena frames {})",
                arena.frames()
            )));
        }
        if cfg.send_slots == 0 || cfg.sq_entries < 8 {
            return Err(UringError::Config(
                "send_slots must be > 0 and sq_entries >= 8".into(),
            ));
        }
        let arena_base =
            NonNull::new(arena.as_ptr()).ok_or_else(|| UringError::Config("null arena".into()))?;
        let payload_off_u32 = u32::try_from(payload_off)
            .map_err(|_| UringError::Config("headroom too large".into()))?;
        let buf_len = frame_size - u32::try_from(buf_start).unwrap_or(frame_size);
        // Every fallible step comes before the buffer ring registration: an
        // early return would drop `buf_ring` before `ring`, which must not
        // happen while the ring memory is registered.
        let (socket, local) = open_udp(
            cfg.local,
            cfg.device.as_deref(),
            cfg.rcvbuf_bytes.unwrap_or(cfg.socket_buf_bytes),
            cfg.socket_buf_bytes,
        )
        .map_err(io_err("socket"))?;
        let cq = (u32::from(entries) + cfg.send_slots + cfg.sq_entries).next_power_of_two();
        let (ring, mode) = build_ring(cfg, cfg.sq_entries, cq).map_err(io_err("io_uring setup"))?;
        let buf_ring = BufRing::new(entries).map_err(io_err("buffer ring mmap"))?;
        // SAFETY: the ring memory is a live page-aligned mapping of `entries`
        // descriptors owned by `buf_ring`, which the port keeps until it has
        // unregistered the group (or closed the ring) in `Drop`.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buf_ring.addr(),
                entries,
                cfg.buf_group,
                0,
            )
        }
        .map_err(io_err("IORING_REGISTER_PBUF_RING"))?;

        let mut recv_hdr = Box::new(zeroed_msghdr());
        recv_hdr.msg_namelen = NAME_AREA;

        let slots: Box<[SendSlot]> = (0..cfg.send_slots)
            .map(|_| SendSlot {
                hdr: zeroed_msghdr(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                name: [0; SOCKADDR_LEN],
                frame: 0,
            })
            .collect();
        let st = State {
            index: cfg.index,
            v6: local.is_ipv6(),
            local,
            frame_size,
            arena_base,
            arena_size: arena.size(),
            payload_off: payload_off_u32,
            buf_len,
            ring_entries: u32::from(entries),
            in_ring: 0,
            kernel_owned: vec![0; (arena.frames() as usize).div_ceil(64)],
            stash: vec![Stashed::default(); usize::from(entries)].into_boxed_slice(),
            stash_head: 0,
            stash_len: 0,
            recv_armed: false,
            free_slots: (0..cfg.send_slots).rev().collect(),
            slots,
            counters: UringCounters::default(),
        };
        let name = format!("{local} (io_uring udp, {mode})");
        let mut port = Self {
            ring,
            buf_ring,
            socket,
            recv_hdr,
            st,
            name,
            buf_group: cfg.buf_group,
            send_to: cfg.send_to,
            shut: false,
        };
        port.refill(pool);
        port.arm_recv();
        port.kick();
        Ok(port)
    }

    /// The socket's local address (with the port resolved if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.st.local
    }

    /// A snapshot of the port's counters.
    pub fn counters(&self) -> UringCounters {
        self.st.counters
    }

    /// Descriptors currently handed to the kernel's buffer ring.
    pub fn rx_buffers_posted(&self) -> u32 {
        self.st.in_ring
    }

    /// Sends waiting for their completion.
    pub fn sends_in_flight(&self) -> usize {
        self.st.slots.len() - self.st.free_slots.len()
    }

    /// Stops receiving, waits (bounded, ~2 s) for in-flight operations, and
    /// returns every frame the port holds to `pool`. The port is inert afterwards.
    pub fn shutdown(&mut self, pool: &mut FramePool) {
        self.quiesce(Some(pool));
    }

    fn arm_recv(&mut self) {
        if self.st.recv_armed || self.st.in_ring == 0 || self.shut {
            return;
        }
        let e = opcode::RecvMsgMulti::new(
            types::Fd(self.socket.as_raw_fd()),
            &raw const *self.recv_hdr,
            self.buf_group,
        )
        .build()
        .user_data(UD_RECV);
        if self.push_sqe(&e) {
            self.st.recv_armed = true;
            self.st.counters.rearms += 1;
        }
    }

    /// Pushes one SQE, flushing the queue to the kernel once if it is full.
    fn push_sqe(&mut self, e: &squeue::Entry) -> bool {
        // SAFETY: every pointer inside the entries we build (msghdr, iovec,
        // name, buffer ring) stays valid until the operation completes: they
        // live in `self` (boxed, never moved) or in the arena, which outlives
        // the port by `new`'s contract.
        if unsafe { self.ring.submission().push(e) }.is_ok() {
            return true;
        }
        self.submit();
        // SAFETY: as above.
        unsafe { self.ring.submission().push(e) }.is_ok()
    }

    fn submit(&mut self) {
        match self.ring.submit() {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                ) => {}
            Err(_) => self.st.counters.submit_errors += 1,
        }
    }

    /// Enters the kernel only when there is something to submit or deferred
    /// completion work to run (IORING_SQ_TASKRUN), or the CQ overflowed.
    fn kick(&mut self) {
        let need = {
            let sq = self.ring.submission();
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
        };
        if need {
            self.submit();
        }
    }

    /// Tops the kernel's buffer ring up from `pool`.
    fn refill(&mut self, pool: &mut FramePool) {
        let st = &mut self.st;
        let fs = u64::from(st.frame_size);
        let buf_start = u64::from(st.payload_off) - RECV_PREFIX as u64;
        let mut pushed = 0;
        while st.in_ring + u32::try_from(st.stash_len).unwrap_or(u32::MAX) < st.ring_entries {
            let Some(frame) = pool.alloc() else { break };
            let idx = frame / fs;
            let Ok(bid) = u16::try_from(idx) else {
                // Cannot happen: `new` checked frames <= 65536. Keep the frame out of the kernel.
                pool.free(frame);
                break;
            };
            st.kernel_owned[(idx / 64) as usize] |= 1 << (idx % 64);
            let addr = st.arena_base.as_ptr() as u64 + frame + buf_start;
            self.buf_ring.push(addr, st.buf_len, bid);
            st.in_ring += 1;
            pushed += 1;
        }
        if pushed > 0 {
            self.buf_ring.publish();
        }
    }

    /// Reaps every completion: sends return their frame to `pool` (or are
    /// forgotten when `pool` is `None`, on drop), receives go to the stash.
    fn reap(&mut self, mut pool: Option<&mut FramePool>) {
        let st = &mut self.st;
        for cqe in self.ring.completion() {
            let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            if ud == UD_RECV {
                st.on_recv(res, flags, pool.as_deref_mut());
            } else if ud & UD_RECV == 0 {
                st.on_send(ud, res, pool.as_deref_mut());
            }
            // UD_CANCEL: nothing to do.
        }
    }

    fn quiesce(&mut self, mut pool: Option<&mut FramePool>) {
        if self.shut {
            return;
        }
        self.shut = true;
        if self.st.recv_armed {
            let e = opcode::AsyncCancel::new(UD_RECV)
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel request carries no pointers.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                self.submit();
                // SAFETY: as above.
                let _ = unsafe { self.ring.submission().push(&e) };
            }
        }
        let ts = types::Timespec::new().nsec(10_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        for _ in 0..200 {
            if !self.st.recv_armed && self.st.free_slots.len() == self.st.slots.len() {
                break;
            }
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                // E.g. EEXIST when dropped on another thread than the single issuer:
                // closing the ring cancels what is left.
                Err(_) => break,
            }
            self.reap(pool.as_deref_mut());
        }
        self.reap(pool.as_deref_mut());
        if self.st.recv_armed {
            return; // Could not stop the receive: keep the buffer ring registered.
        }
        let _ = self.ring.submitter().unregister_buf_ring(self.buf_group);
        let Some(pool) = pool else { return };
        while let Some(s) = self.st.stash_pop() {
            pool.free(u64::from(s.bid) * u64::from(self.st.frame_size));
        }
        let fs = u64::from(self.st.frame_size);
        for (w, word) in self.st.kernel_owned.iter_mut().enumerate() {
            while *word != 0 {
                let bit = u64::from(word.trailing_zeros());
                *word &= *word - 1;
                pool.free((w as u64 * 64 + bit) * fs);
            }
        }
        self.st.in_ring = 0;
    }
}

impl State {
    fn stash_pop(&mut self) -> Option<Stashed> {
        if self.stash_len == 0 {
            return None;
        }
        let s = self.stash[self.stash_head];
        self.stash_head = (self.stash_head + 1) % self.stash.len();
        self.stash_len -= 1;
        Some(s)
    }

    fn on_recv(&mut self, res: i32, flags: u32, pool: Option<&mut FramePool>) {
        if !cqueue::more(flags) {
            self.recv_armed = false;
            if res == -libc::ENOBUFS {
                self.counters.enobufs += 1;
            } else if res < 0 && res != -libc::ECANCELED {
                self.counters.recv_errors += 1;
            }
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        let idx = usize::from(bid);
        let (w, bit) = (idx / 64, 1u64 << (idx % 64));
        if self.kernel_owned.get(w).is_none_or(|x| x & bit == 0) {
            self.counters.recv_errors += 1; // a buffer id we did not post: ignore it
            return;
        }
        self.kernel_owned[w] &= !bit;
        self.in_ring = self.in_ring.saturating_sub(1);
        if res < 0 || self.stash_len == self.stash.len() {
            self.counters.recv_errors += 1;
            if let Some(pool) = pool {
                pool.free(u64::from(bid) * u64::from(self.frame_size));
            }
            return;
        }
        let tail = (self.stash_head + self.stash_len) % self.stash.len();
        self.stash[tail] = Stashed { bid, res };
        self.stash_len += 1;
    }

    fn on_send(&mut self, ud: u64, res: i32, pool: Option<&mut FramePool>) {
        let Some(slot) = usize::try_from(ud).ok().filter(|&i| i < self.slots.len()) else {
            return;
        };
        if res < 0 {
            self.counters.send_errors += 1;
        } else {
            self.counters.tx_packets += 1;
            self.counters.tx_bytes += u64::try_from(res).unwrap_or(0);
        }
        if let Some(pool) = pool {
            pool.free(self.slots[slot].frame);
        }
        // Slot indices are < send_slots, a u32.
        self.free_slots.push(u32::try_from(slot).unwrap_or(0));
    }

    /// Turns a stashed completion into a packet with its synthetic header, or
    /// frees the frame and counts why not.
    fn deliver(
        &mut self,
        s: Stashed,
        arena: &mut Arena,
        pool: &mut FramePool,
        now: u64,
    ) -> Option<Packet> {
        let frame = u64::from(s.bid) * u64::from(self.frame_size);
        let p_off = u64::from(self.payload_off);
        let prefix_at = frame + p_off - RECV_PREFIX as u64;
        let Some(prefix) = arena.get(prefix_at, RECV_PREFIX_U32) else {
            pool.free(frame);
            self.counters.recv_errors += 1;
            return None;
        };
        let word =
            |i: usize| u32::from_ne_bytes([prefix[i], prefix[i + 1], prefix[i + 2], prefix[i + 3]]);
        let (payload_len, msg_flags) = (word(8), word(12));
        let src = decode_sockaddr(&prefix[RECVMSG_OUT_LEN..]);
        let written = u32::try_from(s.res).unwrap_or(0);
        let truncated =
            msg_flags & MSG_TRUNC != 0 || written < RECV_PREFIX_U32.saturating_add(payload_len);
        let (Some(src), false) = (src, truncated) else {
            pool.free(frame);
            self.counters.rx_dropped += 1;
            return None;
        };
        let hl = synth_len(self.v6) as u64;
        let start = frame + p_off - hl;
        let hdr_len = u32::try_from(hl).unwrap_or(0);
        let ok = arena
            .get_mut(start, hdr_len)
            .is_some_and(|h| write_synthetic(h, src, self.local, payload_len as usize).is_ok());
        if !ok {
            pool.free(frame);
            self.counters.rx_dropped += 1;
            return None;
        }
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += u64::from(payload_len);
        Some(Packet::new(start, hdr_len + payload_len, self.index, now))
    }

    /// Fills send slot `slot` for the datagram of `p` (outer header parsed into `o`).
    fn fill_slot(
        &mut self,
        slot: usize,
        p: &Packet,
        payload_off: usize,
        payload_len: usize,
        dst: SocketAddr,
    ) -> *const libc::msghdr {
        let base = self.arena_base.as_ptr();
        let s = &mut self.slots[slot];
        s.frame = p.addr;
        let name_len = encode_sockaddr(dst, &mut s.name);
        // The payload lies within the packet, which `arena.packet` proved is
        // inside the mapping: the offset fits in usize.
        let off = usize::try_from(p.addr).unwrap_or(0) + payload_off;
        debug_assert!(off + payload_len <= self.arena_size);
        s.iov = libc::iovec {
            iov_base: base.wrapping_add(off).cast(),
            iov_len: payload_len,
        };
        s.hdr.msg_name = s.name.as_mut_ptr().cast();
        s.hdr.msg_namelen = name_len;
        s.hdr.msg_iov = &raw mut s.iov;
        s.hdr.msg_iovlen = 1;
        &raw const s.hdr
    }
}

impl Port for UringPort {
    fn recv(&mut self, arena: &mut Arena, pool: &mut FramePool, out: &mut Batch) -> usize {
        if arena.as_ptr() != self.st.arena_base.as_ptr() || self.shut {
            debug_assert!(self.shut, "UringPort used with another arena");
            return 0;
        }
        if self.st.stash_len < out.spare() {
            self.kick();
            self.reap(Some(pool));
        }
        let now = now_ns();
        let mut n = 0;
        while out.spare() > 0 {
            let Some(s) = self.st.stash_pop() else { break };
            if let Some(p) = self.st.deliver(s, arena, pool, now) {
                out.push(p);
                n += 1;
            }
        }
        n
    }

    fn send(
        &mut self,
        arena: &mut Arena,
        pool: &mut FramePool,
        pkts: &mut [Packet],
    ) -> (usize, usize) {
        if arena.as_ptr() != self.st.arena_base.as_ptr() {
            debug_assert!(false, "UringPort used with another arena");
            return (0, 0);
        }
        let (mut sent, mut dropped) = (0, 0);
        for p in pkts.iter_mut() {
            if p.verdict != Verdict::Tx(self.st.index) {
                continue;
            }
            let parsed = match arena.packet(p).map(parse_outer) {
                Some(Ok(o)) => to_socket_family(o.dst, self.st.v6).map(|d| (o, d)),
                _ => None,
            };
            let Some((o, dst)) = parsed else {
                p.verdict = Verdict::Drop(DropReason::Unsupported);
                self.st.counters.tx_malformed += 1;
                dropped += 1;
                continue;
            };
            if self.st.free_slots.is_empty() && !self.shut {
                self.kick();
                self.reap(Some(pool));
            }
            let slot = if self.shut {
                None
            } else {
                self.st.free_slots.pop()
            };
            let Some(slot) = slot else {
                p.verdict = Verdict::Drop(DropReason::TxFull);
                self.st.counters.tx_full += 1;
                dropped += 1;
                continue;
            };
            let msg = self
                .st
                .fill_slot(slot as usize, &*p, o.payload_off, o.payload_len, dst);
            let fd = types::Fd(self.socket.as_raw_fd());
            let e = if self.send_to {
                // IORING_OP_SEND with a destination (sendto): the payload and
                // the slot's name stay valid until the completion.
                let s = &self.st.slots[slot as usize];
                let len = u32::try_from(s.iov.iov_len).unwrap_or(u32::MAX);
                opcode::Send::new(fd, s.iov.iov_base.cast_const().cast(), len)
                    .dest_addr(s.name.as_ptr().cast())
                    .dest_addr_len(s.hdr.msg_namelen)
                    .build()
            } else {
                opcode::SendMsg::new(fd, msg).build()
            }
            .user_data(u64::from(slot));
            if self.push_sqe(&e) {
                sent += 1;
            } else {
                self.st.free_slots.push(slot);
                p.verdict = Verdict::Drop(DropReason::TxFull);
                self.st.counters.tx_full += 1;
                dropped += 1;
            }
        }
        if sent > 0 {
            self.submit();
        }
        (sent, dropped)
    }

    fn maintain(&mut self, pool: &mut FramePool) {
        if self.shut {
            return;
        }
        self.reap(Some(pool));
        self.refill(pool);
        self.arm_recv();
        self.kick();
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for UringPort {
    fn drop(&mut self) {
        // Stop the kernel writing into the arena before it can go away; frames
        // still held are not returned anywhere (use `shutdown` for that).
        self.quiesce(None);
    }
}
