//! Backlogged UDP traffic between the demo's LAN hosts: one sending thread
//! per class in the source host's namespace (several sessions = source
//! ports, Poisson-free constant pacing in 1 ms batches), one receiving
//! thread per destination port. Bounded in time; stopped by a flag.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mongate_testbed::Netns;

/// UDP payload bytes: with IPv4 (20) + UDP (8) + Ethernet (14) headers the
/// inner frame is 1250 bytes, the mean size the gateways assume.
pub const PAYLOAD: usize = 1208;
/// Inner frame bytes of one datagram.
pub const FRAME: usize = PAYLOAD + 42;

/// A change of the offered load at a second of the run (`--scenario flash-crowd`): from then
/// on `sessions` sockets send `pps` in total.
#[derive(Clone, Copy, Debug)]
pub struct Crowd {
    /// When, from the sender's start.
    pub at: Duration,
    /// Sessions from then on (at most the sender's sockets).
    pub sessions: u16,
    /// Packets per second from then on, in total.
    pub pps: f64,
}

/// One sender: `sessions` sockets to `dst`, `pps` in total (until a [`Crowd`]).
pub struct Sender {
    handle: JoinHandle<mongate_testbed::Result<anyhow::Result<u64>>>,
}

impl Sender {
    /// Starts sending from `ns` until `stop` or `limit`, changing to `crowd` at its second.
    pub fn start(
        ns: &Netns,
        dst: SocketAddr,
        sessions: u16,
        pps: f64,
        crowd: Option<Crowd>,
        limit: Duration,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let handle = ns.enter_thread(move || -> anyhow::Result<u64> {
            let most = crowd.map_or(sessions, |c| c.sessions.max(sessions)).max(1);
            let socks: Vec<UdpSocket> = (0..most)
                .map(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
                .collect::<Result<_, _>>()?;
            let buf = vec![0x5au8; PAYLOAD];
            let start = Instant::now();
            let mut sent = 0u64;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
                let t = start.elapsed();
                // Packets due: at `pps` until the crowd, at its rate after.
                let (due, active) = match crowd {
                    Some(c) if t >= c.at => (
                        c.at.as_secs_f64() * pps + (t - c.at).as_secs_f64() * c.pps,
                        usize::from(c.sessions.max(1)),
                    ),
                    _ => (t.as_secs_f64() * pps, usize::from(sessions.max(1))),
                };
                // The float is a small non-negative count of packets.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = due.floor().max(0.0) as u64;
                let active = active.min(socks.len());
                while sent < due {
                    let s = &socks[i % active];
                    i = i.wrapping_add(1);
                    // ENOBUFS / unreachable while the path settles: keep going.
                    let _ = s.send_to(&buf, dst);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(sent)
        })?;
        Ok(Self { handle })
    }

    /// Datagrams sent.
    pub fn join(self) -> anyhow::Result<u64> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??
    }
}

/// A receiver counting datagrams on one port.
pub struct Receiver {
    /// Datagrams received so far.
    pub received: Arc<AtomicU64>,
    handle: JoinHandle<mongate_testbed::Result<anyhow::Result<()>>>,
}

impl Receiver {
    /// Binds `addr` in `ns`; counts until `stop`.
    pub fn start(ns: &Netns, addr: SocketAddr, stop: Arc<AtomicBool>) -> anyhow::Result<Self> {
        let received = Arc::new(AtomicU64::new(0));
        let r = received.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = ns.enter_thread(move || -> anyhow::Result<()> {
            let s = match UdpSocket::bind(addr) {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("bind {addr}: {e}")));
                    return Ok(());
                }
            };
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if s.recv_from(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("receiver did not start"))??;
        Ok(Self { received, handle })
    }

    /// Waits for the thread (after the stop flag is set).
    pub fn join(self) -> anyhow::Result<()> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??
    }
}
