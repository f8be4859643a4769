//! `mongate capture`: packet capture from a running gateway through its
//! mirror region (`NAME.mirror`, `mongate_dataplane::mirror`), written as a
//! classic pcap file (Ethernet, nanosecond timestamps) that tshark and
//! Wireshark read. The gateway's worker copies the frames itself: its
//! AF_XDP and io_uring ports are invisible to tcpdump.
//!
//! Every worker of the gateway copies the frames it handles into its own
//! ring of the region; the capture drains them all and writes the frames
//! in timestamp order (`mirror::Merge`: a frame waits until every ring has
//! shown a later one, or for `mirror::REORDER_WINDOW_NS` at most).
//!
//! A capture asks for frames (sides, directions, peer, flow, protocol,
//! rate, snap length), reads them until `--count` frames or `--seconds`
//! have passed (or Ctrl-C), then turns the mirror off and reports what the
//! workers captured, dropped (ring full) and limited (over `--max-pps`),
//! summed and per worker.
//! The request carries a deadline: a capture killed outright leaves the
//! mirror on for at most `--seconds` + 2 s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mongate_dataplane::mirror::pcap::PcapWriter;
use mongate_dataplane::mirror::{
    Counters, DIR_RX, DIR_TX, Filter, Merge, MirrorError, MirrorRegion, SIDE_LAN, SIDE_WAN,
    SNAP_MAX, StartRequest, gen32, mirror_path,
};
use mongate_dataplane::overlay::wire_flow_id;
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_dataplane::stats::stats_path;
use mongate_dataplane::sys::clock::{now_ns, wall_ns};
use mongate_dataplane::sys::shm::run_dir;

/// Which side(s) of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The LAN port.
    Lan,
    /// The uplinks (GENEVE on UDP 6081, as on the wire).
    Wan,
    /// Both.
    Both,
}

/// Which direction(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Received by the gateway.
    Rx,
    /// Sent by the gateway.
    Tx,
    /// Both.
    Both,
}

/// IP protocols the filter knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 1 (ICMPv6 is `icmpv6`).
    Icmp,
    /// 58.
    Icmpv6,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
        }
    }
}

/// What `mongate capture` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// The gateway instance.
    pub name: String,
    /// Sides.
    pub side: Side,
    /// Directions.
    pub direction: Direction,
    /// Peer name (the site file's `[[peers]] name`).
    pub peer: Option<String>,
    /// Flow id (the site file's `[[flows]] id`).
    pub flow: Option<String>,
    /// IP protocol.
    pub proto: Option<Proto>,
    /// Stop after this many frames.
    pub count: u64,
    /// Stop after this long.
    pub seconds: f64,
    /// Rate limit, frames/s.
    pub max_pps: u64,
    /// Bytes kept per frame.
    pub snaplen: u32,
    /// Output file, `-`: stdout.
    pub out: PathBuf,
    /// JSON summary.
    pub json: bool,
}

/// What a capture did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Gateway instance.
    pub name: String,
    /// Output file (`-`: stdout).
    pub file: String,
    /// Records written to the file.
    pub written: u64,
    /// Frames the workers copied into their rings.
    pub captured: u64,
    /// Frames that matched but found their worker's ring full.
    pub dropped: u64,
    /// Frames that matched but were over `--max-pps`.
    pub limited: u64,
    /// Seconds the mirror was on.
    pub seconds: f64,
    /// The gateway's workers (a ring each).
    pub workers: u64,
    /// Per worker, in worker order: what it captured, dropped, limited.
    pub per_worker: Vec<WorkerCounts>,
}

/// One worker's counters of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCounts {
    /// Frames it copied into its ring.
    pub captured: u64,
    /// Frames that found its ring full.
    pub dropped: u64,
    /// Frames over its share of `--max-pps`.
    pub limited: u64,
}

impl WorkerCounts {
    fn of(c: &Counters) -> Self {
        Self {
            captured: c.captured.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
        }
    }
}

/// The bucket depth for `max_pps`: a tenth of a second's worth, at least 1.
pub fn burst_of(max_pps: u64) -> u64 {
    (max_pps / 10).max(1)
}

/// `--peer` and `--flow` resolved through the gateway's flows region.
fn resolve(o: &Options) -> anyhow::Result<(Option<u16>, Option<u32>)> {
    if o.peer.is_none() && o.flow.is_none() {
        return Ok((None, None));
    }
    let f = FlowStatsRegion::open(&flows_path(&o.name))
        .map_err(|e| anyhow::anyhow!("gateway {:?}: its flows file: {e}", o.name))?;
    let peer = match &o.peer {
        None => None,
        Some(p) => {
            let peers = f.gateway().map(|g| g.peers).unwrap_or_default();
            let i = peers.iter().position(|n| n == p).ok_or_else(|| {
                anyhow::anyhow!(
                    "gateway {:?} has no peer {p:?} (its peers: {})",
                    o.name,
                    list(&peers)
                )
            })?;
            Some(u16::try_from(i)?)
        }
    };
    let flow = match &o.flow {
        None => None,
        Some(id) => {
            let ids = f.ids();
            if !ids.iter().any(|x| x == id) {
                anyhow::bail!(
                    "gateway {:?} has no flow {id:?} (its flows: {})",
                    o.name,
                    list(&ids)
                );
            }
            Some(wire_flow_id(id))
        }
    };
    Ok((peer, flow))
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Opens the gateway's mirror region, with errors that say what is wrong.
fn open(name: &str) -> anyhow::Result<MirrorRegion> {
    let path = mirror_path(name);
    match MirrorRegion::open(&path) {
        Ok(r) => {
            let pid = r.pid();
            if !Path::new(&format!("/proc/{pid}")).exists() {
                anyhow::bail!(
                    "gateway {name:?}: its process ({pid}) is gone ({} is stale)",
                    path.display()
                );
            }
            Ok(r)
        }
        Err(MirrorError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
            if stats_path(name).exists() {
                anyhow::bail!(
                    "gateway {name:?} has no mirror region ({}): a forwarder, or a dataplane without packet capture",
                    path.display()
                )
            }
            anyhow::bail!(
                "no gateway named {name:?} in {} (no {}; `mongate status` lists them)",
                run_dir().display(),
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a capture (see the module documentation).
pub fn run(o: &Options) -> anyhow::Result<Summary> {
    if o.max_pps == 0 {
        anyhow::bail!("--max-pps must be at least 1");
    }
    if !(o.seconds > 0.0 && o.seconds <= 86_400.0) {
        anyhow::bail!("--seconds must be more than 0 and at most 86400");
    }
    let snaplen = o.snaplen.clamp(64, u32::try_from(SNAP_MAX).unwrap_or(2024));
    let (peer, flow) = resolve(o)?;
    let region = open(&o.name)?;
    let filter = Filter {
        sides: match o.side {
            Side::Lan => SIDE_LAN,
            Side::Wan => SIDE_WAN,
            Side::Both => SIDE_LAN | SIDE_WAN,
        },
        dirs: match o.direction {
            Direction::Rx => DIR_RX,
            Direction::Tx => DIR_TX,
            Direction::Both => DIR_RX | DIR_TX,
        },
        peer,
        flow,
        proto: o.proto.map(Proto::number),
    };
    let stdout = o.out.as_os_str() == "-";
    let sink: Box<dyn Write> = if stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&o.out)
                .map_err(|e| anyhow::anyhow!("{}: {e}", o.out.display()))?,
        )
    };
    let mut w = PcapWriter::new(std::io::BufWriter::new(sink), snaplen)?;
    let stop = mongate_dataplane::app::signals::stop_on_signals();
    let duration = Duration::from_secs_f64(o.seconds);
    let generation = now_ns().max(1);
    let wall_offset = wall_ns().wrapping_sub(now_ns());
    // SAFETY: the region is ours alone (its flock), one consumer per ring.
    let mut merge = unsafe { region.merge(gen32(generation)) };
    // Slots an earlier capture left behind.
    merge.discard();
    region.start(&StartRequest {
        generation,
        filter,
        max_pps: o.max_pps,
        burst: burst_of(o.max_pps),
        snaplen: u64::from(snaplen),
        deadline_ns: now_ns().saturating_add(
            u64::try_from(duration.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(2_000_000_000),
        ),
    });
    let t0 = Instant::now();
    // Each worker applies a request at its next loop iteration (tens of
    // microseconds, or one idle sleep).
    while !region.applied_by_all(generation) {
        if t0.elapsed() > Duration::from_secs(2) {
            let late = region.not_applied(generation);
            region.stop();
            anyhow::bail!(
                "gateway {:?} (pid {}): worker(s) {late:?} of {} did not take the capture request within 2 s",
                o.name,
                region.pid(),
                region.workers()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut written = 0u64;
    let mut result = Ok(0);
    while written < o.count && t0.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        result = drain(
            &mut merge,
            &mut w,
            (&mut written, o.count),
            now_ns(),
            wall_offset,
        );
        match result {
            Ok(0) => std::thread::sleep(Duration::from_millis(2)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    region.stop();
    let seconds = t0.elapsed().as_secs_f64();
    // Final counters: once every worker follows generation 0 again.
    let t1 = Instant::now();
    while !region.applied_by_all(0) && t1.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if result.is_ok() {
        // Everything left, in order.
        result = drain(
            &mut merge,
            &mut w,
            (&mut written, o.count),
            u64::MAX,
            wall_offset,
        );
    }
    result
        .and_then(|_| w.flush())
        .map_err(|e| anyhow::anyhow!("{}: {e}", o.out.display()))?;
    let per_worker: Vec<WorkerCounts> = region.all_counters().map(WorkerCounts::of).collect();
    Ok(Summary {
        name: o.name.clone(),
        file: o.out.display().to_string(),
        written,
        captured: per_worker.iter().map(|c| c.captured).sum(),
        dropped: per_worker.iter().map(|c| c.dropped).sum(),
        limited: per_worker.iter().map(|c| c.limited).sum(),
        seconds,
        workers: per_worker.len() as u64,
        per_worker,
    })
}

/// Takes what the rings hold and writes the frames whose turn has come at
/// `now` (read before; `u64::MAX`: all of them) until `count` records are
/// written; returns slots taken from the rings.
fn drain<W: Write>(
    merge: &mut Merge<'_>,
    w: &mut PcapWriter<W>,
    (written, count): (&mut u64, u64),
    now: u64,
    wall_offset: u64,
) -> std::io::Result<usize> {
    let n = merge.fill();
    while *written < count {
        let Some(f) = merge.next(now) else { break };
        w.record(wall_offset.wrapping_add(f.ts_ns), f.orig_len, &f.data)?;
        *written += 1;
    }
    Ok(n)
}

/// The one-line summary.
pub fn line(s: &Summary) -> String {
    let who = if s.workers > 1 {
        format!("{} workers", s.workers)
    } else {
        "worker".to_string()
    };
    format!(
        "capture {}: {} frames written to {} in {:.1} s; {who} captured {}, dropped {} (ring full), limited {} (over --max-pps)",
        s.name, s.written, s.file, s.seconds, s.captured, s.dropped, s.limited
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_a_tenth_of_a_second_at_least_one() {
        assert_eq!(burst_of(1000), 100);
        assert_eq!(burst_of(5), 1);
        assert_eq!(burst_of(1), 1);
    }

    #[test]
    fn protocols_by_number() {
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.number(), 17);
        assert_eq!(Proto::Icmp.number(), 1);
        assert_eq!(Proto::Icmpv6.number(), 58);
    }

    #[test]
    fn summary_line_names_every_counter() {
        let s = Summary {
            name: "site-a".into(),
            file: "x.pcap".into(),
            written: 3,
            captured: 4,
            dropped: 5,
            limited: 6,
            seconds: 1.0,
            workers: 1,
            per_worker: vec![WorkerCounts {
                captured: 4,
                dropped: 5,
                limited: 6,
            }],
        };
        let l = line(&s);
        for w in [
            "site-a",
            "3 frames",
            "worker captured 4",
            "dropped 5",
            "limited 6",
        ] {
            assert!(l.contains(w), "{l}");
        }
        let two = Summary { workers: 2, ..s };
        assert!(
            line(&two).contains("2 workers captured 4"),
            "{}",
            line(&two)
        );
    }
}
