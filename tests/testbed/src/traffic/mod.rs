//! Legitimate traffic between LAN hosts whose arrivals can be counted and
//! checked: UDP datagrams carrying a marker and a sequence number (the
//! receiver counts each sequence once and every duplicate), and a TCP
//! stream sent at a fixed rate (the receiver counts bytes). Counters are
//! atomics, read at any time to measure a window. Every loop is bounded by
//! a time limit and stops early on [`Stop`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// First bytes of every legitimate UDP payload; the sequence (u64, big
/// endian) follows.
pub const LEGIT_MARK: [u8; 8] = *b"MGLEGIT1";

/// A shared stop flag.
pub type Stop = Arc<AtomicBool>;

/// What a [`UdpReceiver`] counted so far.
#[derive(Debug, Default)]
pub struct UdpCounts {
    /// Distinct legitimate sequences received.
    pub unique: AtomicU64,
    /// Legitimate datagrams whose sequence had arrived before.
    pub duplicates: AtomicU64,
    /// Datagrams without the marker, or with a sequence out of range.
    pub foreign: AtomicU64,
    /// Payload bytes of the distinct datagrams.
    pub bytes: AtomicU64,
}

/// Counts legitimate datagrams arriving at one UDP address.
#[derive(Debug)]
pub struct UdpReceiver {
    /// Live counters.
    pub counts: Arc<UdpCounts>,
    handle: Worker,
}

/// A traffic thread: inside its namespace, bounded by its stop flag and limit.
type Worker = JoinHandle<Result<std::io::Result<()>>>;

/// Waits for a traffic thread; its panic or I/O error becomes an error.
fn join(h: Worker, what: &str) -> Result<()> {
    h.join()
        .map_err(|_| Error::ThreadPanicked(what.into()))??
        .map_err(|e| io_err(what, e))
}

fn io_err(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        what: what.into(),
        source,
    }
}

impl UdpReceiver {
    /// Binds `addr` in `ns` (returns once bound) and counts until `stop` or
    /// `limit`; sequences up to `max_seq` are tracked one by one.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        max_seq: u64,
        stop: Stop,
        limit: Duration,
    ) -> Result<Self> {
        let sock = ns
            .run_in(move || UdpSocket::bind(addr))?
            .map_err(|e| io_err("bind UDP receiver", e))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| io_err("UDP read timeout", e))?;
        let counts = Arc::new(UdpCounts::default());
        let c = Arc::clone(&counts);
        let handle = ns.enter_thread(move || -> std::io::Result<()> {
            let words = usize::try_from(max_seq / 64 + 1).unwrap_or(1);
            let mut seen = vec![0u64; words];
            let mut buf = vec![0u8; 65536];
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let p = &buf[..n];
                let seq = (n >= 16 && p[..8] == LEGIT_MARK).then(|| {
                    let mut s = [0u8; 8];
                    s.copy_from_slice(&p[8..16]);
                    u64::from_be_bytes(s)
                });
                let slot = seq.filter(|s| *s <= max_seq).and_then(|s| {
                    let w = usize::try_from(s / 64).ok()?;
                    Some((w, 1u64 << (s % 64)))
                });
                match slot {
                    Some((w, bit)) if seen[w] & bit != 0 => {
                        c.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((w, bit)) => {
                        seen[w] |= bit;
                        c.unique.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    None => {
                        c.foreign.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })?;
        Ok(Self { counts, handle })
    }

    /// Waits for the receiver to end (set its stop flag first).
    pub fn join(self) -> Result<Arc<UdpCounts>> {
        join(self.handle, "UDP receiver")?;
        Ok(self.counts)
    }
}

/// Sends legitimate datagrams (marker, sequence from 0) at a constant rate.
#[derive(Debug)]
pub struct UdpSender {
    /// Datagrams sent so far.
    pub sent: Arc<AtomicU64>,
    handle: Worker,
}

impl UdpSender {
    /// Sends from `ns` to `dst`, `pps` datagrams of `payload` bytes (at
    /// least 16) per second in 1 ms batches, until `stop` or `limit`.
    pub fn start(
        ns: &Netns,
        dst: SocketAddr,
        pps: f64,
        payload: usize,
        stop: Stop,
        limit: Duration,
    ) -> Result<Self> {
        let sent = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&sent);
        let handle = ns.enter_thread(move || -> std::io::Result<()> {
            let any: SocketAddr = if dst.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let sock = UdpSocket::bind(any)?;
            let mut buf = vec![0u8; payload.max(16)];
            buf[..8].copy_from_slice(&LEGIT_MARK);
            let t0 = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
                let due = (t0.elapsed().as_secs_f64() * pps).floor();
                // A small non-negative count of datagrams.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = due.max(0.0) as u64;
                while seq < due {
                    buf[8..16].copy_from_slice(&seq.to_be_bytes());
                    // ENOBUFS while a queue is full: counted as sent (lost).
                    let _ = sock.send_to(&buf, dst);
                    seq += 1;
                    s.store(seq, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })?;
        Ok(Self { sent, handle })
    }

    /// Waits for the sender to end (set its stop flag first).
    pub fn join(self) -> Result<u64> {
        join(self.handle, "UDP sender")?;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

/// Accepts one TCP connection and counts the bytes it delivers.
#[derive(Debug)]
pub struct TcpSink {
    /// Bytes received so far.
    pub bytes: Arc<AtomicU64>,
    handle: Worker,
}

impl TcpSink {
    /// Listens on `addr` in `ns` (returns once listening) and counts until
    /// the peer closes, `stop` or `limit`.
    pub fn start(ns: &Netns, addr: SocketAddr, stop: Stop, limit: Duration) -> Result<Self> {
        let l = ns
            .run_in(move || TcpListener::bind(addr))?
            .map_err(|e| io_err("bind TCP sink", e))?;
        l.set_nonblocking(true)
            .map_err(|e| io_err("TCP sink nonblocking", e))?;
        let bytes = Arc::new(AtomicU64::new(0));
        let b = Arc::clone(&bytes);
        let handle = ns.enter_thread(move || -> std::io::Result<()> {
            let t0 = Instant::now();
            let mut s = loop {
                if stop.load(Ordering::Relaxed) || t0.elapsed() >= limit {
                    return Ok(());
                }
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        b.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(Self { bytes, handle })
    }

    /// Waits for the sink to end.
    pub fn join(self) -> Result<u64> {
        join(self.handle, "TCP sink")?;
        Ok(self.bytes.load(Ordering::Relaxed))
    }
}

/// Sends a TCP stream at a constant rate (bytes written per millisecond).
#[derive(Debug)]
pub struct TcpSource {
    /// Bytes written so far.
    pub bytes: Arc<AtomicU64>,
    handle: Worker,
}

impl TcpSource {
    /// Connects from `ns` to `dst` (within 5 s) and writes `bits_per_s`
    /// until `stop` or `limit`, then closes. Falling behind by more than
    /// 200 ms of data, it forgets the excess instead of bursting.
    pub fn start(
        ns: &Netns,
        dst: SocketAddr,
        bits_per_s: f64,
        stop: Stop,
        limit: Duration,
    ) -> Result<Self> {
        let bytes = Arc::new(AtomicU64::new(0));
        let b = Arc::clone(&bytes);
        let handle = ns.enter_thread(move || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
            s.set_write_timeout(Some(Duration::from_millis(200)))?;
            let chunk = vec![0x5au8; 1 << 16];
            let t0 = Instant::now();
            let mut written = 0u64;
            // Bytes never to be sent: a stalled connection (e.g. while it
            // opens) does not catch up with a burst larger than 200 ms of
            // its rate, which would show as a rate above the set one.
            let mut forgone = 0u64;
            // A non-negative byte count far below 2^53.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let max_debt = (bits_per_s / 8.0 * 0.2).max(1.0) as u64;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
                let due = t0.elapsed().as_secs_f64() * bits_per_s / 8.0;
                // A non-negative byte count far below 2^53.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = due.max(0.0) as u64;
                forgone += due.saturating_sub(forgone + written + max_debt);
                let due = due - forgone;
                while written < due && !stop.load(Ordering::Relaxed) {
                    let n = usize::try_from(due - written)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    match s.write(&chunk[..n]) {
                        Ok(k) => {
                            written += k as u64;
                            b.store(written, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            Ok(())
        })?;
        Ok(Self { bytes, handle })
    }

    /// Waits for the source to end.
    pub fn join(self) -> Result<u64> {
        join(self.handle, "TCP source")?;
        Ok(self.bytes.load(Ordering::Relaxed))
    }
}
