//! Raw frames on an interface (AF_PACKET): a [`PacketSocket`] that sends
//! whole Ethernet frames (optionally bypassing the qdisc, so a tbf on the
//! interface does not pace them) and receives every frame in both
//! directions; and a [`Tap`], a capture thread inside a namespace that
//! hands each frame to a closure until stopped or out of time.
//!
//! Test tooling: the hostile-input test injects forged frames into a WAN
//! segment with it, captures legitimate traffic to replay, and counts what
//! reaches the LAN hosts.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// `ETH_P_ALL` in network order, as `socket(2)` and `bind(2)` want it.
fn eth_p_all() -> u16 {
    // ETH_P_ALL (3) fits u16.
    u16::try_from(libc::ETH_P_ALL).unwrap_or(3).to_be()
}

fn os(what: impl Into<String>) -> Error {
    Error::last_os(what)
}

/// One received frame's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The frame's length on the wire (larger than `len` when truncated).
    pub wire_len: usize,
    /// The frame left through the interface (we see our own transmissions
    /// and those of the interface's owner); false: it arrived.
    pub outgoing: bool,
}

/// An AF_PACKET raw socket bound to one interface (of the calling thread's
/// namespace).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

impl PacketSocket {
    /// Opens a socket on `ifname`. With `receive`, it gets a copy of every
    /// frame in and out of the interface; without, it only sends (nothing
    /// queues up on it).
    pub fn open(ifname: &str, receive: bool) -> Result<Self> {
        let cname = std::ffi::CString::new(ifname)
            .map_err(|_| Error::Invalid(format!("interface name {ifname:?}")))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(os(format!("if_nametoindex({ifname})")));
        }
        let proto = if receive { eth_p_all() } else { 0 };
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(os("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_ll is a valid value; fields set below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        sa.sll_protocol = proto;
        sa.sll_ifindex = i32::try_from(ifindex).map_err(|_| Error::Invalid("ifindex".into()))?;
        let sl = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(20);
        // SAFETY: `sa` is a valid sockaddr_ll of `sl` bytes.
        let rc =
            unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast::<libc::sockaddr>(), sl) };
        if rc != 0 {
            return Err(os(format!("bind AF_PACKET to {ifname}")));
        }
        Ok(Self {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    fn setsockopt<T>(&self, level: i32, name: i32, v: &T, what: &str) -> Result<()> {
        let len = u32::try_from(std::mem::size_of::<T>()).unwrap_or(0);
        // SAFETY: `v` points to a valid `T` of `len` bytes.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                std::ptr::from_ref(v).cast(),
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(os(format!("{what} on {}", self.ifname)))
        }
    }

    /// Sends frames straight to the driver, past the interface's qdisc
    /// (`PACKET_QDISC_BYPASS`): a tbf there does not pace or drop them.
    pub fn bypass_qdisc(&self) -> Result<()> {
        self.setsockopt(
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &1i32,
            "PACKET_QDISC_BYPASS",
        )
    }

    /// Receive timeout: [`PacketSocket::recv`] returns `Ok(None)` after it.
    pub fn set_recv_timeout(&self, d: Duration) -> Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(1),
            tv_usec: libc::suseconds_t::from(d.subsec_micros()),
        };
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")
    }

    /// Receive buffer size (`SO_RCVBUFFORCE`, root), so a burst does not
    /// overflow the socket before the reader runs.
    pub fn set_recv_buffer(&self, bytes: usize) -> Result<()> {
        let v = i32::try_from(bytes).unwrap_or(i32::MAX);
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v, "SO_RCVBUFFORCE")
    }

    /// Sends one whole Ethernet frame out of the interface. Errors are the
    /// kernel's (`EMSGSIZE` above the MTU, `ENOBUFS` when the device queue
    /// is full).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for `frame.len()` bytes; the socket is bound.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Receives one frame into `buf` (truncated to its length); `Ok(None)`
    /// on timeout or interruption.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<RxMeta>> {
        // SAFETY: a zeroed sockaddr_ll is a valid value for the kernel to fill.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut sl = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(20);
        // SAFETY: `buf` and `sa` are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut sa).cast::<libc::sockaddr>(),
                &raw mut sl,
            )
        };
        let Ok(wire_len) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        };
        Ok(Some(RxMeta {
            len: wire_len.min(buf.len()),
            wire_len,
            outgoing: sa.sll_pkttype == libc::PACKET_OUTGOING,
        }))
    }

    /// Frames the kernel dropped on this socket since the last call
    /// (`PACKET_STATISTICS`: receive buffer full).
    pub fn drops(&self) -> Result<u64> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = u32::try_from(std::mem::size_of::<libc::tpacket_stats>()).unwrap_or(8);
        // SAFETY: `st` is valid for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if rc == 0 {
            Ok(u64::from(st.tp_drops))
        } else {
            Err(os(format!("PACKET_STATISTICS on {}", self.ifname)))
        }
    }
}

/// What a [`Tap`] does with each frame.
#[derive(Clone, Copy, Debug)]
pub struct TapConfig {
    /// Bytes kept of each frame (the closure sees at most this many).
    pub snaplen: usize,
    /// Which directions reach the closure.
    pub direction: Direction,
    /// Longest the tap runs, whatever happens.
    pub limit: Duration,
}

/// Directions of a [`Tap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames arriving on the interface.
    In,
    /// Frames leaving it.
    Out,
    /// Both.
    Both,
}

impl Default for TapConfig {
    fn default() -> Self {
        Self {
            snaplen: 2048,
            direction: Direction::Both,
            limit: Duration::from_secs(60),
        }
    }
}

/// What a stopped [`Tap`] returns besides its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames handed to the closure.
    pub frames: u64,
    /// Frames the kernel dropped before the tap read them (socket buffer
    /// full): a count that misses these is a lower bound.
    pub kernel_drops: u64,
}

/// A capture thread on one interface of a namespace: each frame (its first
/// `snaplen` bytes) goes to `f(&mut state, frame, meta)` until
/// [`Tap::stop`] or the time limit.
pub struct Tap<T> {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Result<(T, TapStats)>>>,
    ns: String,
}

impl<T> std::fmt::Debug for Tap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("ns", &self.ns).finish()
    }
}

impl<T: Send + 'static> Tap<T> {
    /// Starts the tap on `ifname` in `ns`; returns once its socket is bound
    /// (every later frame is seen).
    pub fn start<F>(ns: &Netns, ifname: &str, cfg: TapConfig, state: T, mut f: F) -> Result<Self>
    where
        F: FnMut(&mut T, &[u8], RxMeta) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let ifname = ifname.to_owned();
        let stop2 = Arc::clone(&stop);
        let handle = ns.enter_thread(move || -> Result<(T, TapStats)> {
            let opened = PacketSocket::open(&ifname, true).and_then(|s| {
                s.set_recv_timeout(Duration::from_millis(20))?;
                s.set_recv_buffer(32 << 20)?;
                Ok(s)
            });
            let sock = match opened {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Invalid(format!("tap on {ifname}: {e}"))));
                    return Err(e);
                }
            };
            let mut state = state;
            let mut stats = TapStats::default();
            let mut buf = vec![0u8; cfg.snaplen.clamp(64, 65536)];
            let t0 = Instant::now();
            while !stop2.load(Ordering::Relaxed) && t0.elapsed() < cfg.limit {
                let Some(m) = sock.recv(&mut buf).map_err(|source| Error::Io {
                    what: format!("recv on {ifname}"),
                    source,
                })?
                else {
                    continue;
                };
                let keep = match cfg.direction {
                    Direction::Both => true,
                    Direction::In => !m.outgoing,
                    Direction::Out => m.outgoing,
                };
                if keep {
                    stats.frames += 1;
                    f(&mut state, &buf[..m.len], m);
                }
            }
            stats.kernel_drops = sock.drops()?;
            Ok((state, stats))
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Self {
                stop,
                handle,
                ns: ns.name().to_owned(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Invalid(format!(
                "tap in {}: not ready within 10 s",
                ns.name()
            ))),
        }
    }

    /// Stops the tap (within its 20 ms receive timeout) and returns its
    /// state and counts.
    pub fn stop(self) -> Result<(T, TapStats)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| Error::ThreadPanicked(self.ns.clone()))??
    }
}

/// An interface's kernel counters (`/proc/net/dev` of its namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Frames dropped on transmit (a veth counts here what its peer could
    /// not take, e.g. a full XDP ring).
    pub tx_dropped: u64,
}

/// Parses the line of `ifname` in a `/proc/net/dev` text.
pub fn parse_net_dev(text: &str, ifname: &str) -> Option<IfCounters> {
    let line = text
        .lines()
        .find(|l| l.trim_start().split(':').next() == Some(ifname))?;
    let v: Vec<u64> = line
        .split_once(':')?
        .1
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Some(IfCounters {
        rx_packets: *v.get(1)?,
        rx_dropped: *v.get(3)?,
        tx_packets: *v.get(9)?,
        tx_dropped: *v.get(11)?,
    })
}

/// The kernel counters of `ifname` in `ns`.
pub fn if_counters(ns: &Netns, ifname: &str) -> Result<IfCounters> {
    let text = ns
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?
        .map_err(|source| Error::Io {
            what: "read /proc/thread-self/net/dev".into(),
            source,
        })?;
    parse_net_dev(&text, ifname)
        .ok_or_else(|| Error::Invalid(format!("{ifname} not in {}'s /proc/net/dev", ns.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_parse() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n    \
                 xa: 1000 10 0 3 0 0 0 0 2000 20 0 7 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(t, "xa"),
            Some(IfCounters {
                rx_packets: 10,
                rx_dropped: 3,
                tx_packets: 20,
                tx_dropped: 7
            })
        );
        assert_eq!(parse_net_dev(t, "x"), None);
    }
}
