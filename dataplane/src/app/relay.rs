//! A UDP relay on io_uring ports: every datagram received on `listen` is sent
//! on to `to`. The io_uring baseline of the forwarding benchmark, and the
//! shape of an io_uring uplink.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use super::forward::RunningDataplane;
use crate::engine::{Arena, FramePool, Port};
use crate::forward::UdpRelay;
use crate::stats::{StatsRegion, stats_path};
use crate::uring::{RxQueue, UringConfig, UringPort};
use crate::worker::{IdlePolicy, Worker, pin_to_core};

/// An io_uring UDP relay.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Local address every worker's socket binds (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Where datagrams are relayed.
    pub to: SocketAddrV4,
    /// Workers (sockets).
    pub workers: u32,
    /// Cores to pin workers to (cycled); empty: no pinning.
    pub cores: Vec<usize>,
    /// Frames per worker.
    pub frames: u32,
    /// Instance name (stats file).
    pub name: String,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Received datagrams a worker may hold (see [`RxQueue::for_packets`]):
    /// the bound on queueing delay. [`DEFAULT_RX_QUEUE`] unless a caller
    /// trades latency for tolerance of a worker being descheduled.
    pub rx_queue: u32,
}

/// Default of [`RelayConfig::rx_queue`]: 256 provided buffers and a socket
/// buffer for about 256 more small datagrams, i.e. at most ~5 ms of queue at
/// the ~0.1 Mpps one relay worker sustains on the development machine (the
/// former 8 MiB socket buffers and 8192 provided buffers held ~300 ms, and
/// an overload showed as that much latency instead of as loss).
pub const DEFAULT_RX_QUEUE: u32 = 256;

/// Starts the workers; returns when every socket is bound and receiving.
pub fn start_relay(c: &RelayConfig) -> anyhow::Result<RunningDataplane> {
    if c.workers == 0 || c.workers > 64 {
        anyhow::bail!("workers must be 1..=64 (got {})", c.workers);
    }
    let stats = Arc::new(StatsRegion::create(
        &stats_path(&c.name),
        usize::try_from(c.workers)?,
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
    let mut threads = Vec::new();
    for w in 0..c.workers {
        let c = c.clone();
        let stop_w = stop.clone();
        let stats = stats.clone();
        let ready = ready_tx.clone();
        let core =
            (!c.cores.is_empty()).then(|| c.cores[usize::try_from(w).unwrap_or(0) % c.cores.len()]);
        threads.push(
            std::thread::Builder::new()
                .name(format!("mg-uring-{w}"))
                .spawn(move || {
                    if let Some(core) = core {
                        pin_to_core(core);
                    }
                    let built = (|| -> anyhow::Result<(Arena, FramePool, UringPort)> {
                        let arena = Arena::new(c.frames, 2048, 256, true)?;
                        let mut pool = FramePool::new(&arena);
                        let mut ucfg = UringConfig::new(c.listen, 0);
                        // Half the frames at most stay posted: the rest are in flight.
                        RxQueue::for_packets(c.rx_queue.min(c.frames / 2)).apply(&mut ucfg);
                        // SAFETY: the arena outlives the port: both move into the
                        // worker below, whose field order drops ports before the arena,
                        // and every call passes this arena and its pool.
                        let port = unsafe { UringPort::new(&ucfg, &arena, &mut pool) }?;
                        Ok((arena, pool, port))
                    })();
                    match built {
                        Ok((arena, pool, port)) => {
                            let _ = ready.send(Ok(port.name().to_string()));
                            let ports: Vec<Box<dyn Port>> = vec![Box::new(port)];
                            let mut worker =
                                Worker::new(arena, pool, ports, UdpRelay::new(0, c.to), c.idle);
                            worker.run(&stop_w, stats.worker(usize::try_from(w).unwrap_or(0)));
                        }
                        Err(e) => {
                            let _ = ready.send(Err(format!("{e:#}")));
                        }
                    }
                })?,
        );
    }
    drop(ready_tx);
    let mut names = Vec::new();
    let mut err = None;
    for _ in 0..c.workers {
        match ready_rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Ok(n)) => names.push(n),
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some("io_uring worker did not start within 10 s".into()),
        }
    }
    let dp = RunningDataplane::from_parts(stop.clone(), threads, stats, names, None, Vec::new());
    if let Some(e) = err {
        drop(dp);
        anyhow::bail!("{e}");
    }
    Ok(dp)
}
