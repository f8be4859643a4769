//! One AF_XDP socket = one [`crate::engine::Port`].

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use super::sys::*;
use crate::bpf::XdpAttachment;
use crate::engine::{Arena, Batch, FramePool, Packet, Port, Verdict};
use crate::ring::{Consumer, Pod, Producer, RingPtrs};
use crate::sys::clock::now_ns;
use crate::sys::mmap::Mmap;

/// Copy or zero-copy binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// The kernel copies frames (works on every driver, e.g. veth).
    Copy,
    /// The NIC DMAs into the UMEM (drivers with AF_XDP zero-copy support).
    ZeroCopy,
    /// Zero-copy if the driver supports it, copy otherwise.
    Auto,
}

/// What one socket is bound to.
#[derive(Clone, Debug)]
pub struct AfXdpConfig {
    /// Interface name.
    pub ifname: String,
    /// Queue id.
    pub queue: u32,
    /// Slots in the rx and tx rings (power of two).
    pub ring_size: u32,
    /// Slots in the fill and completion rings (power of two).
    pub fill_size: u32,
    /// Copy / zero-copy.
    pub bind: BindMode,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`): the worker drives
    /// the device's NAPI from its own `recvfrom`/`sendto` calls instead of
    /// softirq or a poller thread, with this budget per poll (0: off).
    pub busy_poll_budget: u16,
    /// Copy mode: frames one `sendto` hands to the driver
    /// (`XDP_MAX_TX_SKB_BUDGET`, Linux >= 6.17; 32..=`ring_size`). 0: the
    /// kernel's default (32).
    pub tx_skb_budget: u32,
}

impl AfXdpConfig {
    /// Defaults: 4096-slot rx/tx rings, 8192-slot fill/completion rings,
    /// zero-copy if the driver has it.
    pub fn new(ifname: &str, queue: u32) -> Self {
        Self {
            ifname: ifname.to_string(),
            queue,
            ring_size: 4096,
            fill_size: 8192,
            bind: BindMode::Auto,
            busy_poll_budget: 0,
            tx_skb_budget: 0,
        }
    }
}

/// Setting up a socket failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// The interface does not exist.
    #[error("{0}: no such interface (see `ip link`)")]
    NoInterface(String),
    /// No privileges: an AF_XDP socket takes CAP_NET_RAW (its XDP program
    /// and XSKMAP take CAP_BPF and CAP_NET_ADMIN: `BpfError::Permission`).
    #[error(
        "AF_XDP {op} on {ifname}: permission denied: needs CAP_NET_RAW (run as root, or give it as an ambient capability: docs/deploy.md)"
    )]
    Permission {
        /// Step.
        op: &'static str,
        /// Interface.
        ifname: String,
    },
    /// The UMEM is pinned and counted against RLIMIT_MEMLOCK unless the
    /// process has CAP_IPC_LOCK; the kernel answers ENOBUFS over the limit.
    #[error(
        "{ifname}: registering the {mib} MiB UMEM: over the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`): needs CAP_IPC_LOCK or a higher limit (docs/deploy.md), or fewer --frames"
    )]
    MemLock {
        /// Interface.
        ifname: String,
        /// UMEM size, MiB (rounded up).
        mib: u64,
    },
    /// The kernel has no AF_XDP.
    #[error(
        "AF_XDP is not available in this kernel (CONFIG_XDP_SOCKETS): use the io_uring backend"
    )]
    NoAfXdp,
    /// Queue out of range.
    #[error(
        "{ifname}: no queue {queue}: the interface has fewer queues (see `ethtool -l {ifname}`, raise with `ethtool -L`)"
    )]
    NoQueue {
        /// Interface.
        ifname: String,
        /// Queue.
        queue: u32,
    },
    /// Zero-copy was required but the driver cannot.
    #[error("{ifname}: zero-copy AF_XDP not supported by this driver: use copy mode")]
    NoZeroCopy {
        /// Interface.
        ifname: String,
    },
    /// The queue already has a socket.
    #[error("{ifname} queue {queue}: already in use by another AF_XDP socket")]
    Busy {
        /// Interface.
        ifname: String,
        /// Queue.
        queue: u32,
    },
    /// The kernel refused the bind for another reason.
    #[error(
        "{ifname} queue {queue}: the kernel refused the AF_XDP socket ({err}): check the driver supports AF_XDP (`ethtool -i {ifname}`; loopback does not) and the queue exists (`ethtool -l {ifname}`)"
    )]
    BindRefused {
        /// Interface.
        ifname: String,
        /// Queue.
        queue: u32,
        /// OS error.
        err: std::io::Error,
    },
    /// Ring sizes must be powers of two.
    #[error("AF_XDP ring sizes must be powers of two (got {0})")]
    RingSize(u32),
    /// The kernel refused `XDP_MAX_TX_SKB_BUDGET`.
    #[error("{ifname}: XDP_MAX_TX_SKB_BUDGET {budget}: {why}")]
    TxSkbBudget {
        /// Interface.
        ifname: String,
        /// The budget asked for.
        budget: u32,
        /// Why (no such option in this kernel, or out of range).
        why: String,
    },
    /// XSKMAP registration failed.
    #[error(transparent)]
    Bpf(#[from] crate::bpf::BpfError),
    /// Any other OS error.
    #[error("AF_XDP {op} on {ifname}: {err}")]
    Os {
        /// Step.
        op: &'static str,
        /// Interface.
        ifname: String,
        /// OS error.
        err: std::io::Error,
    },
}

/// A port's own counters (the worker copies them into shared-memory stats).
#[derive(Clone, Copy, Debug, Default)]
pub struct AfXdpStats {
    /// Frames received.
    pub rx: u64,
    /// Frames queued for transmit.
    pub tx: u64,
    /// Transmit completions reaped.
    pub tx_completed: u64,
    /// Frames not queued: tx ring full.
    pub tx_ring_full: u64,
    /// sendto() kicks.
    pub kicks: u64,
    /// Kicks that failed with an unexpected error.
    pub kick_errors: u64,
    /// Times the fill ring could not be topped up (pool empty).
    pub fill_starved: u64,
    /// The kernel's ring indices were inconsistent (should never happen).
    pub ring_corrupt: u64,
}

/// An AF_XDP socket bound to one (interface, queue).
pub struct AfXdpPort {
    // Rings first: dropped before their mappings and the socket.
    rx: Consumer<XdpDesc>,
    tx: Producer<XdpDesc>,
    fill: Producer<u64>,
    comp: Consumer<u64>,
    _maps: [Mmap; 4],
    fd: OwnedFd,
    index: u16,
    name: String,
    zero_copy: bool,
    tx_pending_kick: bool,
    stats: AfXdpStats,
    fill_target: u32,
    busy_poll: bool,
}

fn err(op: &'static str, ifname: &str) -> AfXdpError {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AfXdpError::Permission {
            op,
            ifname: ifname.to_string(),
        },
        Some(libc::EAFNOSUPPORT) => AfXdpError::NoAfXdp,
        _ => AfXdpError::Os {
            op,
            ifname: ifname.to_string(),
            err: e,
        },
    }
}

fn setsockopt<T>(
    fd: RawFd,
    opt: i32,
    v: &T,
    op: &'static str,
    ifname: &str,
) -> Result<(), AfXdpError> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(0);
    // SAFETY: `v` points to a valid `T` of `len` bytes for the duration of the call.
    let r = unsafe { libc::setsockopt(fd, SOL_XDP, opt, (v as *const T).cast(), len) };
    if r != 0 { Err(err(op, ifname)) } else { Ok(()) }
}

fn map_ring<T: Pod>(
    fd: BorrowedFd<'_>,
    off: &XdpRingOffset,
    n: u32,
    pgoff: i64,
    ifname: &str,
) -> Result<(Mmap, RingPtrs<T>), AfXdpError> {
    let len = usize::try_from(off.desc)
        .unwrap_or(usize::MAX)
        .saturating_add(n as usize * std::mem::size_of::<T>());
    // The rings using the mapping are dropped with (before) the port that
    // owns it (field order of `AfXdpPort`). On failure errno still holds
    // mmap's error for `err`.
    let map = Mmap::kernel(fd, pgoff, len).map_err(|_| err("mmap ring", ifname))?;
    let base = map.base();
    let at = |o: u64| -> NonNull<u8> {
        // SAFETY: the kernel's offsets lie within the mapping of `len` bytes.
        unsafe { base.add(usize::try_from(o).unwrap_or(0)) }
    };
    let ptrs = RingPtrs {
        producer: at(off.producer).cast::<AtomicU32>(),
        consumer: at(off.consumer).cast::<AtomicU32>(),
        flags: Some(at(off.flags).cast::<AtomicU32>()),
        slots: at(off.desc).cast::<T>(),
        size: n,
    };
    Ok((map, ptrs))
}

/// True when the driver reports fewer than `queue + 1` queue pairs on
/// `ifname` (ETHTOOL_GCHANNELS: answers for the caller's network namespace).
fn queue_missing(ifname: &str, queue: u32) -> bool {
    use mongate_hwconfig::discover::ethtool::EthtoolSocket;
    match EthtoolSocket::open().and_then(|s| s.channels(ifname)) {
        Ok(ch) => ch.queue_pairs() > 0 && queue >= ch.queue_pairs(),
        Err(_) => false,
    }
}

impl AfXdpPort {
    /// Opens a socket on `cfg.ifname`/`cfg.queue`, registers `arena` as its
    /// UMEM (or shares the UMEM of `shared` — the first socket of the same
    /// worker), and puts it in `xdp`'s XSKMAP so the XDP program redirects the
    /// queue's traffic to it (no `xdp`: a transmit-only socket). `index` is the port's index within its worker.
    pub fn open(
        cfg: &AfXdpConfig,
        index: u16,
        arena: &Arena,
        shared: Option<&AfXdpPort>,
        xdp: Option<&XdpAttachment>,
    ) -> Result<Self, AfXdpError> {
        match cfg.bind {
            BindMode::Auto => match Self::open_mode(cfg, index, arena, shared, xdp, true) {
                Ok(p) => Ok(p),
                // Some drivers refuse zero-copy with EINVAL rather than EOPNOTSUPP.
                Err(AfXdpError::NoZeroCopy { .. } | AfXdpError::BindRefused { .. }) => {
                    Self::open_mode(cfg, index, arena, shared, xdp, false)
                }
                Err(e) => Err(e),
            },
            BindMode::ZeroCopy => Self::open_mode(cfg, index, arena, shared, xdp, true),
            BindMode::Copy => Self::open_mode(cfg, index, arena, shared, xdp, false),
        }
    }

    fn open_mode(
        cfg: &AfXdpConfig,
        index: u16,
        arena: &Arena,
        shared: Option<&AfXdpPort>,
        xdp: Option<&XdpAttachment>,
        zero_copy: bool,
    ) -> Result<Self, AfXdpError> {
        let ifname = cfg.ifname.as_str();
        for n in [cfg.ring_size, cfg.fill_size] {
            if n == 0 || !n.is_power_of_two() {
                return Err(AfXdpError::RingSize(n));
            }
        }
        if queue_missing(ifname, cfg.queue) {
            return Err(AfXdpError::NoQueue {
                ifname: ifname.into(),
                queue: cfg.queue,
            });
        }
        let ifindex = match xdp {
            Some(x) => x.ifindex(),
            None => crate::bpf::ifindex(ifname)
                .map_err(|_| AfXdpError::NoInterface(ifname.to_string()))?,
        };
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err("socket", ifname));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        if shared.is_none() {
            let reg = XdpUmemReg {
                addr: arena.as_ptr() as u64,
                len: arena.size() as u64,
                chunk_size: arena.frame_size(),
                headroom: arena.headroom(),
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(s, XDP_UMEM_REG, &reg, "register UMEM", ifname).map_err(|e| match e {
                AfXdpError::Os { err, .. } if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    AfXdpError::MemLock {
                        ifname: ifname.to_string(),
                        mib: (arena.size() as u64).div_ceil(1 << 20),
                    }
                }
                e => e,
            })?;
        }
        setsockopt(s, XDP_UMEM_FILL_RING, &cfg.fill_size, "fill ring", ifname)?;
        setsockopt(
            s,
            XDP_UMEM_COMPLETION_RING,
            &cfg.fill_size,
            "completion ring",
            ifname,
        )?;
        setsockopt(s, XDP_RX_RING, &cfg.ring_size, "rx ring", ifname)?;
        setsockopt(s, XDP_TX_RING, &cfg.ring_size, "tx ring", ifname)?;
        if cfg.tx_skb_budget > 0 {
            setsockopt(
                s,
                XDP_MAX_TX_SKB_BUDGET,
                &cfg.tx_skb_budget,
                "tx skb budget",
                ifname,
            )
            .map_err(|e| AfXdpError::TxSkbBudget {
                ifname: ifname.to_string(),
                budget: cfg.tx_skb_budget,
                why: match &e {
                    AfXdpError::Os { err, .. } if err.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                        "this kernel has no such option (Linux >= 6.17 has it)".to_string()
                    }
                    // EACCES (mapped to `Permission` by `err`): the socket
                    // exists, so it was allowed; the kernel says range.
                    AfXdpError::Permission { .. } => {
                        format!("out of range: 32..={} (the tx ring's size)", cfg.ring_size)
                    }
                    e => e.to_string(),
                },
            })?;
        }

        let mut off = XdpMmapOffsets::default();
        let mut optlen =
            libc::socklen_t::try_from(std::mem::size_of::<XdpMmapOffsets>()).unwrap_or(0);
        // SAFETY: `off` is writable for `optlen` bytes.
        let r = unsafe {
            libc::getsockopt(
                s,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut XdpMmapOffsets).cast(),
                &mut optlen,
            )
        };
        if r != 0 {
            return Err(err("mmap offsets", ifname));
        }
        let (m_rx, p_rx) = map_ring::<XdpDesc>(
            fd.as_fd(),
            &off.rx,
            cfg.ring_size,
            XDP_PGOFF_RX_RING,
            ifname,
        )?;
        let (m_tx, p_tx) = map_ring::<XdpDesc>(
            fd.as_fd(),
            &off.tx,
            cfg.ring_size,
            XDP_PGOFF_TX_RING,
            ifname,
        )?;
        let (m_fr, p_fr) = map_ring::<u64>(
            fd.as_fd(),
            &off.fr,
            cfg.fill_size,
            XDP_UMEM_PGOFF_FILL_RING,
            ifname,
        )?;
        let (m_cr, p_cr) = map_ring::<u64>(
            fd.as_fd(),
            &off.cr,
            cfg.fill_size,
            XDP_UMEM_PGOFF_COMPLETION_RING,
            ifname,
        )?;

        // A socket sharing another's UMEM may set no other flag: it inherits
        // copy/zero-copy and need-wakeup from the first socket.
        let (flags, shared_fd, zero_copy) = match shared {
            Some(first) => (
                XDP_SHARED_UMEM,
                u32::try_from(first.fd.as_raw_fd()).unwrap_or(0),
                first.zero_copy,
            ),
            None => (
                XDP_USE_NEED_WAKEUP | if zero_copy { XDP_ZEROCOPY } else { XDP_COPY },
                0,
                zero_copy,
            ),
        };
        let sa = SockaddrXdp {
            family: u16::try_from(AF_XDP).unwrap_or(0),
            flags,
            ifindex,
            queue_id: cfg.queue,
            shared_umem_fd: shared_fd,
        };
        let salen = libc::socklen_t::try_from(std::mem::size_of::<SockaddrXdp>()).unwrap_or(0);
        // The kernel releases a closed socket's hold on a queue
        // asynchronously (a deferred work item): a dataplane restarted at once
        // sees EBUSY for a moment. Retry that, bounded (setup path only).
        let mut r;
        let mut tries = 0;
        loop {
            // SAFETY: `sa` is a valid sockaddr_xdp of `salen` bytes.
            r = unsafe { libc::bind(s, (&sa as *const SockaddrXdp).cast(), salen) };
            if r == 0
                || std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY)
                || tries >= 40
            {
                break;
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                // Drivers without ethtool channels (e.g. lo): the kernel
                // answers EINVAL for a queue beyond the device's.
                Some(libc::EINVAL) if cfg.queue > 0 => AfXdpError::NoQueue {
                    ifname: ifname.into(),
                    queue: cfg.queue,
                },
                Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT) if zero_copy => {
                    AfXdpError::NoZeroCopy {
                        ifname: ifname.into(),
                    }
                }
                Some(libc::EBUSY) => AfXdpError::Busy {
                    ifname: ifname.into(),
                    queue: cfg.queue,
                },
                Some(libc::EPERM) => AfXdpError::Permission {
                    op: "bind",
                    ifname: ifname.into(),
                },
                _ => AfXdpError::BindRefused {
                    ifname: ifname.into(),
                    queue: cfg.queue,
                    err: e,
                },
            });
        }
        // SAFETY: the rings were mapped above for this socket and live in
        // `_maps` as long as the port; this port is their only user-space
        // producer/consumer; the kernel uses the indices atomically.
        let (rx, tx, fill, comp) = unsafe {
            (
                Consumer::new(p_rx).ok_or(AfXdpError::RingSize(cfg.ring_size))?,
                Producer::new(p_tx).ok_or(AfXdpError::RingSize(cfg.ring_size))?,
                Producer::new(p_fr).ok_or(AfXdpError::RingSize(cfg.fill_size))?,
                Consumer::new(p_cr).ok_or(AfXdpError::RingSize(cfg.fill_size))?,
            )
        };
        let busy_poll = cfg.busy_poll_budget > 0 && {
            const SO_BUSY_POLL: i32 = 46;
            const SO_PREFER_BUSY_POLL: i32 = 69;
            const SO_BUSY_POLL_BUDGET: i32 = 70;
            let set = |opt: i32, v: i32| {
                // SAFETY: `v` is a valid int for the duration of the call.
                unsafe {
                    libc::setsockopt(s, libc::SOL_SOCKET, opt, (&v as *const i32).cast(), 4) == 0
                }
            };
            set(SO_PREFER_BUSY_POLL, 1)
                && set(SO_BUSY_POLL, 20)
                && set(SO_BUSY_POLL_BUDGET, i32::from(cfg.busy_poll_budget))
        };
        let mode = match xdp {
            Some(x) => {
                x.register(cfg.queue, s)?;
                format!("{:?}", x.mode()).to_lowercase()
            }
            None => "tx-only".to_string(),
        };
        let name = format!(
            "{}/q{} (af_xdp {} {})",
            ifname,
            cfg.queue,
            mode,
            if zero_copy { "zero-copy" } else { "copy" }
        );
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            _maps: [m_rx, m_tx, m_fr, m_cr],
            fd,
            index,
            name,
            zero_copy,
            tx_pending_kick: false,
            stats: AfXdpStats::default(),
            fill_target: cfg.fill_size,
            busy_poll,
        })
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The port's counters.
    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    /// The kernel's counters for this socket (drops for lack of fill
    /// buffers or a full rx ring, invalid descriptors).
    pub fn kernel_stats(&self) -> Option<XdpStatistics> {
        let mut st = XdpStatistics::default();
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<XdpStatistics>()).unwrap_or(0);
        // SAFETY: `st` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_STATISTICS,
                (&mut st as *mut XdpStatistics).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(st)
    }

    /// Free slots in the transmit ring (re-reads the kernel's index).
    pub fn tx_room(&mut self) -> u32 {
        let n = self.tx.size();
        self.tx.free(n).unwrap_or(0)
    }

    /// Limits how many frames this port keeps in the kernel's fill ring.
    pub fn set_fill_target(&mut self, n: u32) {
        self.fill_target = n.min(self.fill.size());
    }

    fn kick_tx(&mut self) {
        // Copy mode sends at most 32 frames per syscall (TX_BATCH_SIZE in
        // net/xdp/xsk.c) and answers EAGAIN when more are queued: kick a
        // bounded number of times.
        for _ in 0..8 {
            self.stats.kicks += 1;
            // SAFETY: a zero-length sendto on our own socket; no buffer is read.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                self.tx_pending_kick = false;
                return;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => continue,
                Some(libc::EBUSY) | Some(libc::ENOBUFS) => return,
                _ => {
                    self.stats.kick_errors += 1;
                    return;
                }
            }
        }
    }
}

impl Port for AfXdpPort {
    #[inline]
    fn recv(&mut self, _arena: &mut Arena, _pool: &mut FramePool, out: &mut Batch) -> usize {
        let want = u32::try_from(out.spare()).unwrap_or(0);
        match self.rx.available(want) {
            Ok(0) if self.busy_poll => {
                // Run the device's NAPI here (busy poll), then look again.
                // SAFETY: zero-length non-blocking recvfrom on our own socket.
                unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        std::ptr::null_mut(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                if self.rx.available(want).unwrap_or(0) == 0 {
                    return 0;
                }
            }
            Ok(0) => return 0,
            Ok(_) => {}
            Err(_) => {
                self.stats.ring_corrupt += 1;
                return 0;
            }
        }
        let now = now_ns();
        let mut n = 0;
        while out.spare() > 0 {
            let Some(d) = self.rx.pop() else { break };
            out.push(Packet::new(d.addr, d.len, self.index, now));
            n += 1;
        }
        self.rx.release();
        self.stats.rx += n as u64;
        n
    }

    #[inline]
    fn send(
        &mut self,
        _arena: &mut Arena,
        _pool: &mut FramePool,
        pkts: &mut [Packet],
    ) -> (usize, usize) {
        let (mut sent, mut dropped) = (0usize, 0usize);
        for p in pkts.iter_mut() {
            if p.verdict != Verdict::Tx(self.index) {
                continue;
            }
            if self.tx.push(XdpDesc {
                addr: p.addr,
                len: p.len,
                options: 0,
            }) {
                sent += 1;
            } else {
                p.verdict = Verdict::Drop(crate::engine::DropReason::TxFull);
                dropped += 1;
            }
        }
        if sent > 0 {
            self.tx.publish();
            self.tx_pending_kick = true;
        }
        if self.tx_pending_kick {
            // Copy mode (and generic XDP) transmit only from a syscall.
            if !self.zero_copy || self.tx.needs_wakeup() {
                self.kick_tx();
            } else {
                self.tx_pending_kick = false;
            }
        }
        self.stats.tx += sent as u64;
        self.stats.tx_ring_full += dropped as u64;
        (sent, dropped)
    }

    #[inline]
    fn maintain(&mut self, pool: &mut FramePool) {
        // Reap completions.
        if self.comp.available(1).is_err() {
            self.stats.ring_corrupt += 1;
            return;
        }
        let mut reaped = 0u64;
        while let Some(addr) = self.comp.pop() {
            pool.free(addr);
            reaped += 1;
        }
        self.comp.release();
        self.stats.tx_completed += reaped;
        // Frames still queued in copy mode need another kick.
        if self.tx_pending_kick {
            self.kick_tx();
        }
        // Top up the fill ring (`free` re-reads the kernel's consumer index).
        let size = self.fill.size();
        let free = match self.fill.free(size) {
            Ok(f) => f,
            Err(_) => {
                self.stats.ring_corrupt += 1;
                return;
            }
        };
        let in_kernel = size - free;
        if in_kernel < self.fill_target {
            let want = self.fill_target - in_kernel;
            let mut pushed = 0;
            while pushed < want {
                let Some(f) = pool.alloc() else {
                    self.stats.fill_starved += 1;
                    break;
                };
                if !self.fill.push(f) {
                    pool.free(f);
                    break;
                }
                pushed += 1;
            }
            self.fill.publish();
        }
        if self.fill.needs_wakeup() && !self.busy_poll {
            // SAFETY: zero-length non-blocking recvfrom on our own socket wakes
            // the driver's rx path; no buffer is written.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kernel_drops(&self) -> Option<crate::engine::KernelDrops> {
        self.kernel_stats().map(|k| crate::engine::KernelDrops {
            rx_dropped: k.rx_dropped,
            rx_ring_full: k.rx_ring_full,
            fill_empty: k.rx_fill_ring_empty_descs,
        })
    }
}
