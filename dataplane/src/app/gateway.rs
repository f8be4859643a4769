//! The site gateway: a site configuration turned into a running overlay
//! dataplane. One worker owns the LAN port (AF_XDP) and every uplink
//! (AF_XDP, or an io_uring UDP socket for NATed uplinks), runs the
//! [`Gateway`] stage, steps the control channel (plans in, telemetry out)
//! and publishes per-flow counters.
//!
//! Start-up asks the kernel (in the caller's network namespace) for the
//! interfaces' MACs and addresses and resolves, per peer, which uplink and
//! which of the peer's gateway addresses to use and the next hop's MAC:
//! an address on-link on an uplink (its subnet) is reached directly (ARP),
//! otherwise through the uplink's `next_hop` / `gateway_mac`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use crate::bpf::{XdpAttachment, XdpFilter, XdpMode};
use crate::config::{Backend, Config};
use crate::engine::{Arena, BATCH_SIZE, Batch, FramePool, Nanos, Packet, Port, Stage, Verdict};
use crate::mirror::{
    DIR_RX, DIR_TX, FrameInfo, MirrorRegion, MirrorTap, SIDE_LAN, SIDE_WAN, mirror_path,
};
use crate::overlay::{Gateway, PeerRoute, Settings};
use crate::shm::msg::{
    CLASSES_PER_MSG, ClassTelemetry, FLOW_TEL_PER_MSG, FlowTelemetry, KEYS_PER_MSG, KeyUsage,
    PATHS_PER_MSG, PEERS_PER_MSG, PathTelemetry, PeerTelemetry,
};
use crate::shm::{Command, CtlRegion, PlanAssembler, Telemetry, WorkerChannel, ctl_path};
use crate::stats::flows::{FlowStatsRegion, flows_path};
use crate::stats::gateway::GatewayLayout;
use crate::stats::{StatsRegion, stats_path};
use crate::sys::clock::now_ns;
use crate::uring::{UringConfig, UringPort};
use crate::wire::ethernet::MacAddr;
use crate::wire::geneve::UDP_PORT as GENEVE_PORT;
use crate::worker::{IdlePolicy, Worker, pin_to_core};

use super::RunningDataplane;
use super::netinfo::{self, IfAddr};
use super::reload::{GatewayReloader, ReloadSlot};

/// How to run a site gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The site configuration.
    pub site: Config,
    /// Instance name: `<run dir>/NAME.{stats,flows,ctl}` (`sys::shm::shm_path`).
    pub name: String,
    /// XDP attach mode of the AF_XDP ports.
    pub xdp_mode: XdpMode,
    /// AF_XDP binding.
    pub bind: BindMode,
    /// Frames of the worker's UMEM.
    pub frames: u32,
    /// Core to pin the worker to (worker 0 when `cores` is empty).
    pub core: Option<usize>,
    /// Workers (at least 1): worker `w` serves queue `w` of the LAN
    /// interface and of every uplink (each needs that many queues).
    pub workers: usize,
    /// Core of each worker (empty: `core` for worker 0, the others
    /// unpinned).
    pub cores: Vec<usize>,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Departures made late by up to this many of the worker's idle sleeps
    /// (at least 100 us) are made up (`Settings::pacing_max_lag_ns`); later
    /// ones are rate lost. 2 by default; a host whose wake-ups come late
    /// (many gateways per core: the demo's 11-site topology) needs more.
    pub pacing_lag_sleeps: u32,
    /// Pipeline tunables (MACs, ports, routes and LAN addresses are filled
    /// in by [`start_gateway`]).
    pub settings: Settings,
    /// Create the control channel (`.ctl`) so `mongate-control run` can
    /// attach; without it the gateway runs the configuration's plan.
    pub control: bool,
    /// Longest wait for a neighbour's MAC at start-up.
    pub resolve_timeout: Duration,
    /// Telemetry and flow-counter period.
    pub report_every: Duration,
}

impl GatewayConfig {
    /// Defaults for `site`, instance named after the site.
    /// The classifier's idle timeout is the site's `session_idle_timeout_seconds`;
    /// the controllers' and pacers' tunables are its `[montra]` table.
    pub fn new(site: Config) -> Self {
        let mut settings = Settings::default();
        settings.classifier.idle_timeout = site.site.session_idle_timeout_ns();
        site.montra.apply(&mut settings);
        Self {
            name: site.site.name.clone(),
            site,
            xdp_mode: XdpMode::Auto,
            bind: BindMode::Auto,
            frames: 8192,
            core: None,
            workers: 1,
            cores: Vec::new(),
            idle: IdlePolicy::default(),
            pacing_lag_sleeps: 2,
            settings,
            control: true,
            resolve_timeout: Duration::from_secs(3),
            report_every: Duration::from_millis(100),
        }
    }
}

/// The worker's end of the control channel.
struct Channel {
    chan: WorkerChannel,
}

/// The worker's stage: the overlay [`Gateway`] plus the control channel and
/// the flow counters (both stepped from `maintain`, a few hundred times a
/// second at most).
struct GatewayStage {
    gw: Gateway,
    chan: Option<Channel>,
    flows: Arc<FlowStatsRegion>,
    worker: usize,
    now: Nanos,
    next_step: Nanos,
    next_report: Nanos,
    step_every: Nanos,
    report_every: Nanos,
    flow_buf: Vec<FlowTelemetry>,
    /// When the plan in force came into force (worker clock).
    plan_since: Nanos,
    /// Reloads staged by the main thread.
    reload: Arc<ReloadSlot>,
    /// Packet capture (`NAME.mirror`, `mongate capture`): this worker's
    /// traffic, into its own ring of the region.
    mirror: MirrorTap,
    /// Each worker's session count (its table's), summed by worker 0 into
    /// the flows file's gateway section.
    sessions: Arc<[std::sync::atomic::AtomicU64]>,
}

impl GatewayStage {
    fn housekeeping(&mut self, now: Nanos) {
        if let Some((live, cfg, generation)) = self.reload.take() {
            self.gw.apply_live(&live, &cfg, now);
            if live.plan.is_some() {
                self.plan_since = now;
            }
            self.reload.applied(generation);
            tracing::info!(reload = generation, changes = %live.describe(), "reload in force");
        }
        if let Some(c) = self.chan.as_mut() {
            let gw = &mut self.gw;
            let rep = c.chan.step(now, 64, |cmd: &Command| match *cmd {
                Command::Assign { count, items } => {
                    let n = usize::try_from(count).unwrap_or(0).min(items.len());
                    for a in &items[..n] {
                        gw.on_assign(a.flow, a.path, now);
                    }
                }
                Command::Probe {
                    id,
                    path,
                    count,
                    interval_ns,
                } => gw.on_probe_command(id, path, count, interval_ns, now),
                Command::PlanChunk(_) | Command::PlanCommit { .. } => {}
                Command::InstallKey(k) => {
                    if let Err(e) = gw.install_key(&k) {
                        tracing::warn!(key = k.local_index, error = ?e, "session key refused");
                    }
                }
                Command::RevokeKey { local_index } => {
                    gw.revoke_key(local_index);
                }
                Command::SendHandshake(h) => {
                    gw.queue_handshake(&h);
                }
            });
            if rep.switched.is_some() {
                let plan = c.chan.plan();
                self.gw.switch_plan(plan, now);
                self.plan_since = now;
                tracing::info!(epoch = plan.epoch, "plan in force");
            }
            if let Some((e, why)) = rep.refused {
                tracing::warn!(epoch = e, reason = ?why, "plan refused by the channel");
            }
        }
        self.gw.expire_keys(now);
        // Idle (and closed) sessions free their admission.
        self.gw.classifier.housekeep(now);
        if let Some(c) = self.chan.as_mut() {
            // Probe outcomes, path events and handshake messages go out at
            // once (the control's races and handshakes wait on them), while
            // the ring has room.
            let port = c.chan.port();
            let mut sent = false;
            self.gw.drain_handshakes(|h| {
                let ok = port.send(&Telemetry::Handshake(*h));
                sent |= ok;
                ok
            });
            self.gw.drain_probe_outcomes(|o| {
                let ok = port.send(&Telemetry::ProbeResult {
                    id: o.id,
                    path: o.path,
                    sent: o.sent,
                    received: o.received,
                    rtt_min_ns: o.rtt_min_ns,
                    rtt_mean_ns: o.rtt_mean_ns,
                });
                sent |= ok;
                ok
            });
            self.gw.drain_path_events(|path, event, at_ns| {
                let ok = port.send(&Telemetry::PathEvent { path, event, at_ns });
                sent |= ok;
                ok
            });
            if sent {
                port.flush();
            }
        }
        if now >= self.next_report {
            self.next_report = now + self.report_every;
            self.report(now);
        }
    }

    /// The gateway section of the flows file (plan, control, classes,
    /// paths; `mongate status`): plain stores, no allocation.
    fn publish_status(&mut self, now: Nanos) {
        let Some(h) = self.flows.gateway_header() else {
            return;
        };
        let st = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        let k = self.gw.classifier();
        if let Some(n) = self.sessions.get(self.worker) {
            st(n, u64::try_from(k.sessions()).unwrap_or(u64::MAX));
        }
        let workers = self.gw.settings().workers;
        let w16 = u16::try_from(self.worker).unwrap_or(u16::MAX);
        // Each class's counts come from the worker that owns it; the rest
        // of the section from worker 0 (the plan and control are the same
        // on every worker; worker 0 probes the paths).
        for (ci, cl) in self.gw.config().classes.iter().enumerate() {
            let c16 = u16::try_from(ci).unwrap_or(u16::MAX);
            if crate::classify::class_owner(c16, workers) != w16 {
                continue;
            }
            let Some(slot) = self.flows.class_slot(ci) else {
                break;
            };
            st(&slot.active, u64::from(k.active_sessions(c16)));
            st(&slot.waiting, u64::from(k.waiting_sessions(c16)));
            st(&slot.admitted, u64::from(k.admitted_limit(c16)));
            st(
                &slot.local,
                u64::from(cl.source == self.gw.config().site.name),
            );
        }
        if self.worker != 0 {
            return;
        }
        st(&h.epoch, k.epoch());
        st(&h.plan_since_ns, self.plan_since);
        if let Some(c) = self.chan.as_mut() {
            let port = c.chan.port();
            st(&h.control_heartbeat_ns, port.control_heartbeat_ns());
            st(&h.control_session, port.control_session());
            st(&h.control_region, 1);
        }
        let sessions = self
            .sessions
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add);
        st(&h.sessions, sessions);
        st(
            &h.lan_hosts,
            u64::try_from(self.gw.neighbour_count()).unwrap_or(u64::MAX),
        );
        st(&h.lan_hosts_not_learned, self.gw.neighbour_stats().full);
        let flows = &self.flows;
        let mut i = 0;
        self.gw.for_each_path_record(now, |r| {
            if let Some(slot) = flows.path_slot(i) {
                slot.store(&r);
            }
            i += 1;
        });
        st(&h.updated_ns, now);
    }

    /// Flow counters and the gateway section to the flows file; telemetry
    /// to the control.
    fn report(&mut self, now: Nanos) {
        let mean = self.gw.settings().rate_unit_bytes;
        self.flow_buf.clear();
        for fi in 0..self.gw.config().flows.len() {
            let Some(c) = self.gw.flow_counters(fi, now) else {
                continue;
            };
            if let Some(s) = self.flows.slot(self.worker, fi) {
                s.store(&c);
                s.path
                    .store(u64::from(self.gw.flow_path(fi)), Ordering::Relaxed);
            }
            if self.gw.flow_starts_here(fi) && self.gw.runs_flow(fi) {
                let flow = u32::try_from(fi).unwrap_or(u32::MAX);
                let path = self.gw.flow_path(fi);
                self.flow_buf.push(FlowTelemetry::new(flow, path, &c, mean));
            }
        }
        self.publish_status(now);
        let Some(c) = self.chan.as_mut() else {
            return;
        };
        for chunk in self.flow_buf.chunks(FLOW_TEL_PER_MSG) {
            let mut items = [FlowTelemetry::default(); FLOW_TEL_PER_MSG];
            items[..chunk.len()].copy_from_slice(chunk);
            let t = Telemetry::Flows {
                count: u32::try_from(chunk.len()).unwrap_or(0),
                items,
            };
            if !c.chan.port().send(&t) {
                break;
            }
        }
        // Only the classes whose sessions start here (the others' counts
        // are always zero and the control would count them as foreign).
        let cfg = self.gw.config();
        let me = cfg.site.name.as_str();
        let mut items = [ClassTelemetry::default(); CLASSES_PER_MSG];
        let mut n = 0;
        let (workers, w16) = (
            self.gw.settings().workers,
            u16::try_from(self.worker).unwrap_or(u16::MAX),
        );
        let local = cfg.classes.iter().enumerate().filter(|(ci, cl)| {
            cl.source == me
                && crate::classify::class_owner(u16::try_from(*ci).unwrap_or(u16::MAX), workers)
                    == w16
        });
        for (ci, _) in local {
            let k = self.gw.classifier();
            let c16 = u16::try_from(ci).unwrap_or(u16::MAX);
            items[n] = ClassTelemetry {
                class: u32::try_from(ci).unwrap_or(u32::MAX),
                active: k.active_sessions(c16),
                waiting: k.waiting_sessions(c16),
            };
            n += 1;
            if n == CLASSES_PER_MSG {
                let t = Telemetry::Classes {
                    count: u32::try_from(n).unwrap_or(0),
                    items,
                };
                c.chan.port().send(&t);
                n = 0;
            }
        }
        if n > 0 {
            let t = Telemetry::Classes {
                count: u32::try_from(n).unwrap_or(0),
                items,
            };
            c.chan.port().send(&t);
        }
        if self.worker != 0 {
            // Peers and paths: worker 0's (it probes). Keys: every worker's,
            // each its own lane's count (the control adds them up).
            Self::report_keys(&self.gw, c.chan.port());
            c.chan.port().flush();
            return;
        }
        let npeers = self.gw.peer_count();
        let mut start = 0;
        while start < npeers {
            let n = (npeers - start).min(PEERS_PER_MSG);
            let mut items = [PeerTelemetry::default(); PEERS_PER_MSG];
            for (k, it) in items[..n].iter_mut().enumerate() {
                let pi = start + k;
                let (d, up, sw) = self.gw.peer_summary(pi).unwrap_or((0, 0, 0));
                let c16 = |v: usize| u16::try_from(v.min(0xFFFF)).unwrap_or(u16::MAX);
                *it = PeerTelemetry {
                    peer: c16(pi),
                    direct: c16(d),
                    direct_up: c16(up),
                    switches: u16::try_from(sw & 0xFFFF).unwrap_or(0),
                };
            }
            let t = Telemetry::Peers {
                count: u32::try_from(n).unwrap_or(0),
                items,
            };
            if !c.chan.port().send(&t) {
                break;
            }
            start += n;
        }
        let mut batch = [PathTelemetry::default(); PATHS_PER_MSG];
        let mut n = 0;
        let mut full = false;
        let port = c.chan.port();
        let mut send = |items: &[PathTelemetry; PATHS_PER_MSG], n: usize| {
            let t = Telemetry::Paths {
                count: u32::try_from(n).unwrap_or(0),
                items: *items,
            };
            port.send(&t)
        };
        self.gw.for_each_path(now, |p| {
            if full {
                return;
            }
            batch[n] = p;
            n += 1;
            if n == PATHS_PER_MSG {
                full = !send(&batch, n);
                n = 0;
            }
        });
        if n > 0 && !full {
            send(&batch, n);
        }
        Self::report_keys(&self.gw, c.chan.port());
        c.chan.port().flush();
    }

    /// This worker's use of its installed keys, to the control (after the
    /// paths on worker 0: see the driver's inventory).
    fn report_keys(gw: &Gateway, port: &mut crate::shm::WorkerPort) {
        if !gw.security_required() {
            return;
        }
        let mut items = [KeyUsage::default(); KEYS_PER_MSG];
        let mut n = 0;
        let mut send = |items: &[KeyUsage; KEYS_PER_MSG], n: usize| {
            port.send(&Telemetry::Keys {
                count: u32::try_from(n).unwrap_or(0),
                items: *items,
            })
        };
        for k in gw.key_usage() {
            items[n] = k;
            n += 1;
            if n == KEYS_PER_MSG {
                if !send(&items, n) {
                    return;
                }
                n = 0;
            }
        }
        if n > 0 {
            send(&items, n);
        }
    }
}

impl Stage for GatewayStage {
    fn process(&mut self, now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        if !self.mirror.on() {
            self.gw.process(now, arena, batch);
            return;
        }
        // Captured as on the wire: uplink frames before the stage opens or
        // decapsulates them, remembering their flow option (a frame
        // delivered to the LAN has lost it by the time it is sent). A frame
        // another worker handed here was captured there, as it arrived.
        let mut wire = [None::<u32>; BATCH_SIZE];
        let lan = self.gw.settings().lan_port;
        let by_flow = self.mirror.filter().flow.is_some();
        for (k, p) in batch.as_slice().iter().enumerate() {
            if p.port != lan
                && let Some(frame) = arena.packet(p)
            {
                let w = if by_flow { wan_flow(frame) } else { None };
                if let Some(slot) = wire.get_mut(k) {
                    *slot = w;
                }
                if p.handed_from() != 0 {
                    continue;
                }
                let gw = &self.gw;
                self.mirror
                    .offer(now, p.port, (SIDE_WAN, DIR_RX), frame, || {
                        frame_info(gw, SIDE_WAN, DIR_RX, frame, w)
                    });
            }
        }
        self.gw.process(now, arena, batch);
        for (k, p) in batch.as_slice().iter().enumerate() {
            if p.port == lan && !matches!(p.verdict, Verdict::Tx(_)) {
                // Held (queued for pacing) or dropped: the frame is as it
                // arrived, and the classifier has mapped its session (or
                // the worker that classified it handed it here with its
                // flow). One handed on to another worker (`Tx` to a
                // handoff port) is captured there.
                if let Some(frame) = arena.packet(p) {
                    let gw = &self.gw;
                    let handed = p.handoff_flow().filter(|_| p.handed_from() != 0);
                    self.mirror
                        .offer(now, p.port, (SIDE_LAN, DIR_RX), frame, || {
                            let flow = match handed {
                                Some(fi) => gw.flows.get(fi as usize).map(|f| f.wire_id),
                                None => lan_flow(gw, frame),
                            };
                            frame_info(gw, SIDE_LAN, DIR_RX, frame, flow)
                        });
                }
            } else {
                let w = wire.get(k).copied().flatten();
                mirror_tx(&mut self.mirror, &self.gw, now, arena, p, w);
            }
        }
        self.mirror.finish();
    }
    fn poll(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        self.now = now;
        let start = out.len();
        self.gw.poll(now, arena, out);
        if self.mirror.on() {
            for p in out.as_slice().get(start..).unwrap_or(&[]) {
                mirror_tx(&mut self.mirror, &self.gw, now, arena, p, None);
            }
            self.mirror.finish();
        }
    }
    fn maintain(&mut self, pool: &mut FramePool) {
        self.gw.replenish(pool);
        self.mirror.sync(self.now);
        if self.now >= self.next_step {
            let now = self.now;
            self.next_step = now + self.step_every;
            self.housekeeping(now);
        }
    }
}

/// Offers a frame the stage hands to a port (`Verdict::Tx`); `wire`: the
/// flow option of the uplink frame it was made from, if any.
fn mirror_tx(
    tap: &mut MirrorTap,
    gw: &Gateway,
    now: Nanos,
    arena: &Arena,
    p: &Packet,
    wire: Option<u32>,
) {
    let Verdict::Tx(port) = p.verdict else {
        return;
    };
    // Handed to another worker, not sent: that worker captures it.
    if port >= gw.settings().handoff_first_port {
        return;
    }
    let Some(frame) = arena.packet(p) else {
        return;
    };
    let side = if port == gw.settings().lan_port {
        SIDE_LAN
    } else {
        SIDE_WAN
    };
    tap.offer(now, port, (side, DIR_TX), frame, || {
        let flow = if side == SIDE_WAN {
            wan_flow(frame)
        } else {
            wire
        };
        frame_info(gw, side, DIR_TX, frame, flow)
    });
}

/// The wire flow id in an overlay frame's flow option (OAM frames: 0).
fn wan_flow(frame: &[u8]) -> Option<u32> {
    crate::wire::overlay::decap(frame, false)
        .ok()?
        .meta
        .flow
        .map(|f| f.flow_id)
}

/// The wire flow id of the planned flow the classifier mapped a LAN
/// frame's session to.
fn lan_flow(gw: &Gateway, frame: &[u8]) -> Option<u32> {
    let i = crate::classify::inner::parse(frame).ok()?;
    let fi = gw.classifier().session_flow(&i)?;
    gw.flows.get(fi as usize).map(|f| f.wire_id)
}

/// What the capture filter asks of a frame: its (outermost) IP protocol;
/// its peer: on an uplink the peer whose configured gateway address is the
/// remote end, on the LAN the peer whose prefixes hold the remote inner
/// address; and the given flow.
fn frame_info(gw: &Gateway, side: u8, dir: u8, frame: &[u8], flow: Option<u32>) -> FrameInfo {
    let Ok(i) = crate::classify::inner::parse(frame) else {
        return FrameInfo {
            flow,
            ..FrameInfo::default()
        };
    };
    // The far end: a LAN frame received goes to it, one sent comes from
    // it; an uplink frame the other way round.
    let remote = if (side == SIDE_LAN) == (dir == DIR_RX) {
        crate::overlay::dst_addr(&i.tuple)
    } else {
        crate::overlay::src_addr(&i.tuple)
    };
    let peer = if side == SIDE_LAN {
        gw.peer_of(remote)
    } else {
        gw.config()
            .peers
            .iter()
            .position(|p| p.gateways.contains(&remote))
    };
    FrameInfo {
        peer: peer.and_then(|p| u16::try_from(p).ok()),
        flow,
        proto: Some(i.tuple.proto),
    }
}

/// Resolves every direct path to every peer (see the module
/// documentation), in preference order: on-link pairs first, then routed
/// ones, in file order. A pair whose next hop does not answer ARP is left
/// out with a warning (its link may be down now; the others still serve).
fn peer_routes(
    site: &Config,
    uplink_addrs: &[Vec<IfAddr>],
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<PeerRoute>>> {
    let mut out = Vec::with_capacity(site.peers.len());
    for p in &site.peers {
        // (uplink, gateway, on-link)
        let mut cands: Vec<(usize, IpAddr, bool)> = Vec::new();
        for (ui, u) in site.uplinks.iter().enumerate() {
            for g in &p.gateways {
                if g.is_ipv4() != u.local_address.is_ipv4() {
                    continue;
                }
                let on_link = uplink_addrs[ui].iter().any(|a| a.on_link(*g));
                // Another uplink's subnet holds it: this uplink would reach
                // it only through the Internet, which an emulated
                // point-to-point link does not have.
                let elsewhere = !on_link
                    && uplink_addrs
                        .iter()
                        .enumerate()
                        .any(|(k, a)| k != ui && a.iter().any(|x| x.on_link(*g)));
                let routed = u.gateway_mac.is_some() || u.next_hop.is_some();
                if on_link || (routed && !elsewhere) || u.backend == Backend::IoUring {
                    cands.push((ui, *g, on_link));
                }
            }
        }
        cands.sort_by_key(|c| !c.2);
        let mut routes = Vec::new();
        for (ui, gw, on_link) in cands {
            let u = &site.uplinks[ui];
            let mac = if u.backend == Backend::IoUring {
                Ok(MacAddr::default())
            } else if on_link && u.gateway_mac.is_none() {
                resolve(&u.interface, gw, timeout)
            } else if let Some(m) = u.gateway_mac {
                Ok(m)
            } else if let Some(nh) = u.next_hop {
                resolve(&u.interface, nh, timeout)
            } else {
                Err(anyhow::anyhow!("uplink {} has no next hop", u.name))
            };
            match mac {
                Ok(dst_mac) => routes.push(PeerRoute {
                    uplink: ui,
                    gateway: gw,
                    dst_mac,
                }),
                Err(e) => {
                    tracing::warn!(peer = %p.name, uplink = %u.name, error = %format!("{e:#}"), "path left out at start")
                }
            }
        }
        if routes.is_empty() {
            tracing::warn!(
                peer = %p.name,
                "no uplink reaches any of its gateway addresses (same family, on-link or with next_hop/gateway_mac)"
            );
        }
        out.push(routes);
    }
    Ok(out)
}

fn resolve(ifname: &str, ip: IpAddr, timeout: Duration) -> anyhow::Result<MacAddr> {
    match ip {
        IpAddr::V4(a) => netinfo::resolve_v4(ifname, a, timeout),
        IpAddr::V6(a) => anyhow::bail!(
            "{ifname}: {a}: IPv6 neighbours are not resolved automatically; set `gateway_mac`"
        ),
    }
}

/// Builds the ports and the stage, starts the worker. Returns once the
/// worker runs (sockets bound, receive buffers posted).
pub fn start_gateway(c: &GatewayConfig) -> anyhow::Result<RunningDataplane> {
    let site = &c.site;
    check_security(site)?;
    let nports = 1 + site.uplinks.len();
    if nports > crate::stats::MAX_PORTS {
        anyhow::bail!(
            "at most {} uplinks per gateway (got {})",
            crate::stats::MAX_PORTS - 1,
            site.uplinks.len()
        );
    }
    let workers = c.workers.max(1);
    check_workers(c, workers)?;
    check_queues(c, workers)?;
    let found = discover(c)?;
    let filters = attach_filters(c, &found, workers)?;
    let started = now_ns();
    // Workers' handoff ports follow the LAN and uplink ports.
    let first_handoff = u16::try_from(nports).unwrap_or(u16::MAX);
    let mut links = if workers > 1 {
        crate::worker::handoff::mesh(workers, first_handoff)?
    } else {
        Vec::new()
    };
    let mut built = Vec::with_capacity(workers);
    let mut names = Vec::new();
    for w in 0..workers {
        let queue = u32::try_from(w).unwrap_or(u32::MAX);
        let mut ports = open_ports(c, &filters, found.settings.reserve_frames, queue)?;
        if w == 0 {
            names = std::mem::take(&mut ports.names);
        }
        let reserve = std::mem::take(&mut ports.reserve);
        let mut settings = found.settings.clone();
        settings.workers = u16::try_from(workers).unwrap_or(u16::MAX);
        settings.worker = u16::try_from(w).unwrap_or(u16::MAX);
        settings.handoff_first_port = first_handoff;
        // Each worker its own pacing gaps.
        settings.seed = settings.seed.wrapping_add(w as u64);
        let mut gw = Gateway::new(site, settings, reserve, started)?;
        if let Some(l) = links.get_mut(w) {
            gw.attach_notes(l.take_notes());
            for hp in std::mem::take(&mut l.ports) {
                ports.ports.push(Some(Box::new(hp)));
            }
        }
        built.push((ports, gw));
    }
    let regions = open_regions(c, &built[0].1, started, workers)?;
    let mut threads = Vec::new();
    let mut slots = Vec::new();
    let sessions: Arc<[std::sync::atomic::AtomicU64]> = (0..workers)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    for (w, (ports, gw)) in built.into_iter().enumerate() {
        let stage = gateway_stage(c, gw, &regions, started, w, sessions.clone())?;
        slots.push(stage.reload.clone());
        let core = c
            .cores
            .get(w)
            .copied()
            .or(if w == 0 { c.core } else { None });
        match spawn_worker(c, ports, stage, &regions, w, core) {
            Ok(t) => threads.push(t),
            Err(e) => {
                regions.stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    let reloader = GatewayReloader {
        slots,
        config: c.site.clone(),
        plan_from_file: !c.control,
        flows: regions.flows.clone(),
        generation: 0,
    };
    if let Some(r) = regions.ctl.clone() {
        threads.push(spawn_housekeeping(c, r, regions.stop.clone())?);
    }
    let mut xdp = vec![filters.lan];
    xdp.extend(filters.uplinks.into_iter().flatten());
    let mode = xdp[0].mode();
    let mut rd =
        RunningDataplane::from_parts(regions.stop, threads, regions.stats, names, Some(mode), xdp);
    rd.keep(Box::new(regions.flows));
    rd.keep(Box::new(regions.mirror));
    if let Some(r) = regions.ctl {
        rd.keep(Box::new(r));
    }
    rd.reloader = Some(reloader);
    Ok(rd)
}

/// Several workers: every uplink AF_XDP (an io_uring uplink is one UDP
/// socket), and no more workers than the stats files describe.
fn check_workers(c: &GatewayConfig, workers: usize) -> anyhow::Result<()> {
    if workers == 1 {
        return Ok(());
    }
    if workers > crate::stats::MAX_WORKERS || workers > usize::from(u8::MAX) - 1 {
        anyhow::bail!(
            "at most {} workers per gateway (got {workers})",
            crate::stats::MAX_WORKERS
        );
    }
    if c.site.security.required() && workers > crate::secure::MAX_LANES {
        anyhow::bail!(
            "at most {} workers per gateway with security (each seals in its own counter lane; got {workers})",
            crate::secure::MAX_LANES
        );
    }
    if let Some(u) = c.site.uplinks.iter().find(|u| u.backend != Backend::AfXdp) {
        anyhow::bail!(
            "uplink {} uses io_uring: a gateway with {workers} workers needs AF_XDP uplinks (one queue per worker)",
            u.name
        );
    }
    Ok(())
}

/// Worker w serves queue w of the LAN interface and of every AF_XDP
/// uplink: an interface with fewer receive queues than workers cannot
/// start (refused, saying so); one with more sends what the NIC steers to
/// the others to the kernel, not to the gateway (a warning: the queue
/// count or RSS is the operator's, e.g. `mongate-hwconfig`).
fn check_queues(c: &GatewayConfig, workers: usize) -> anyhow::Result<()> {
    let mut ifaces = vec![c.site.site.lan_interface.as_str()];
    ifaces.extend(
        c.site
            .uplinks
            .iter()
            .filter(|u| u.backend == Backend::AfXdp)
            .map(|u| u.interface.as_str()),
    );
    for ifname in ifaces {
        let Some(q) = netinfo::rx_queues(ifname) else {
            continue;
        };
        let q = usize::try_from(q).unwrap_or(usize::MAX);
        if q < workers {
            anyhow::bail!(
                "{ifname} has {q} receive queue(s) and the gateway {workers} workers (one queue each): \
                 give it {workers} (ethtool -L {ifname} combined {workers}) or run fewer workers"
            );
        }
        if q > workers {
            tracing::warn!(
                interface = ifname,
                queues = q,
                workers,
                "more receive queues than workers: packets steered to queues {workers}.. reach the kernel, not the gateway \
                 (ethtool -L {ifname} combined {workers}, or --workers {q})"
            );
        }
    }
    Ok(())
}

/// Refuses a private key file others could read or swap (the dataplane
/// never reads the key: the control does); warns when security is off.
fn check_security(site: &Config) -> anyhow::Result<()> {
    match &site.security.private_key_file {
        _ if !site.security.required() => {
            tracing::warn!(
                "[security] mode = \"off\": overlay packets are neither encrypted nor \
                 authenticated; anyone reaching an uplink can inject traffic"
            );
            Ok(())
        }
        Some(path) => crate::sys::check_private_key_file(path)
            .map_err(|e| anyhow::anyhow!("private key file {}: {e}", path.display())),
        None => anyhow::bail!("[security] requires a private_key_file"),
    }
}

/// What [`discover`] learned from the kernel: the pipeline's settings with
/// ports, MACs, LAN addresses, known neighbours and peer routes filled in,
/// and the LAN's IPv4 and IPv6 addresses (for the LAN filter).
struct Discovered {
    settings: Settings,
    lan_v4: Vec<core::net::Ipv4Addr>,
    lan_v6: Vec<core::net::Ipv6Addr>,
}

/// Phase 1: asks the kernel (in the caller's namespace) for the interfaces'
/// MACs and addresses, the LAN hosts it knows, and resolves every peer's
/// paths; fills the pipeline's settings from them.
fn discover(c: &GatewayConfig) -> anyhow::Result<Discovered> {
    let site = &c.site;
    let nports = 1 + site.uplinks.len();
    let lan_if = site.site.lan_interface.as_str();
    let lan_mac = netinfo::iface_mac(lan_if)?;
    let lan_addrs = netinfo::iface_addrs(lan_if)?;
    let mut uplink_macs = Vec::new();
    let mut uplink_addrs = Vec::new();
    for u in &site.uplinks {
        uplink_macs.push(netinfo::iface_mac(&u.interface)?);
        uplink_addrs.push(netinfo::iface_addrs(&u.interface)?);
    }
    let mut settings = c.settings.clone();
    // Hash keys of the session and neighbour tables: random at every start,
    // so that LAN hosts cannot choose addresses and ports that collide.
    settings.classifier.hash_seed = crate::sys::rng::os_seed()?;
    // Probe nonces: unpredictable off the path.
    settings.probe_nonce_seed = crate::sys::rng::os_seed()?;
    settings.lan_port = 0;
    settings.uplink_ports = (1..nports)
        .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
        .collect();
    settings.lan_mac = lan_mac;
    settings.uplink_macs = uplink_macs;
    let lan_v4: Vec<_> = lan_addrs
        .iter()
        .filter_map(|a| match a.addr {
            IpAddr::V4(x) => Some(x),
            IpAddr::V6(_) => None,
        })
        .collect();
    let lan_v6: Vec<_> = lan_addrs
        .iter()
        .filter_map(|a| match a.addr {
            IpAddr::V6(x) => Some(x),
            IpAddr::V4(_) => None,
        })
        .collect();
    settings.lan_address_v4 = lan_v4.first().copied();
    settings.lan_address_v6 = lan_v6.iter().find(|a| !a.is_unicast_link_local()).copied();
    // LAN hosts the kernel already knows (more are learned from traffic).
    for (ip, mac) in netinfo::arp_table(lan_if) {
        settings.neighbours.push((IpAddr::V4(ip), mac));
    }
    settings.peer_routes = peer_routes(site, &uplink_addrs, c.resolve_timeout)?;
    settings.rate_divisor = 1;
    settings.detours = true;
    // Departures made late by the worker's own idle sleeps are made up.
    settings.pacing_max_lag_ns = pacing_max_lag_ns(c.idle.sleep_us, c.pacing_lag_sleeps);
    if settings.health.probe_interval_ns == 0 {
        settings.health.probe_interval_ns = 50_000_000;
    }
    if settings.health.ack_gap_ns == 0 {
        settings.health.ack_gap_ns = 60_000_000;
    }
    Ok(Discovered {
        settings,
        lan_v4,
        lan_v6,
    })
}

/// The XDP filters in place: the LAN's (all IP not for the host) and each
/// AF_XDP uplink's (UDP to the GENEVE port).
struct Filters {
    lan: XdpAttachment,
    /// Per uplink; `None` for io_uring uplinks.
    uplinks: Vec<Option<XdpAttachment>>,
}

/// Phase 2: attaches the XDP filters.
fn attach_filters(
    c: &GatewayConfig,
    found: &Discovered,
    workers: usize,
) -> anyhow::Result<Filters> {
    let lan_if = c.site.site.lan_interface.as_str();
    let queues = u32::try_from(workers).unwrap_or(u32::MAX);
    let lan = XdpAttachment::attach(
        lan_if,
        &XdpFilter::lan(&found.lan_v4, &found.lan_v6),
        queues,
        c.xdp_mode,
    )?;
    let mut uplinks = Vec::new();
    for u in &c.site.uplinks {
        if u.backend == Backend::AfXdp {
            uplinks.push(Some(XdpAttachment::attach(
                &u.interface,
                &XdpFilter::wan(&[GENEVE_PORT]),
                queues,
                c.xdp_mode,
            )?));
        } else {
            uplinks.push(None);
        }
    }
    Ok(Filters { lan, uplinks })
}

/// The shared-memory files and the stop flag.
struct Regions {
    stop: Arc<AtomicBool>,
    stats: Arc<StatsRegion>,
    flows: Arc<FlowStatsRegion>,
    /// The control channel, unless the gateway runs without a control.
    ctl: Option<Arc<CtlRegion>>,
    /// Packet capture requests and frames.
    mirror: Arc<MirrorRegion>,
}

/// Phase 4: creates the stats, flows (with the gateway section: the
/// gateway's classes, peers, uplinks and candidate paths) and (with a
/// control) control regions.
fn open_regions(
    c: &GatewayConfig,
    gw: &Gateway,
    started: Nanos,
    workers: usize,
) -> anyhow::Result<Regions> {
    let site = &c.site;
    let stats = Arc::new(StatsRegion::create(&stats_path(&c.name), workers)?);
    let ids: Vec<&str> = site.flows.iter().map(|f| f.id.as_str()).collect();
    let mut paths = 0;
    gw.for_each_path(started, |_| paths += 1);
    let layout = GatewayLayout {
        classes: site.classes.iter().map(|cl| cl.id.clone()).collect(),
        peers: site.peers.iter().map(|p| p.name.clone()).collect(),
        uplinks: site
            .uplinks
            .iter()
            .map(|u| format!("{} ({})", u.name, u.interface))
            .collect(),
        paths,
        flow_classes: site
            .flows
            .iter()
            .map(|f| {
                site.classes
                    .iter()
                    .position(|cl| cl.id == f.class)
                    .unwrap_or(usize::MAX)
            })
            .collect(),
        rate_unit_bytes: gw.settings().rate_unit_bytes,
    };
    let flows = Arc::new(FlowStatsRegion::create_gateway(
        &flows_path(&c.name),
        workers,
        &ids,
        &layout,
    )?);
    if let Some(h) = flows.gateway_header() {
        h.started_ns.store(started, Ordering::Relaxed);
        h.plan_since_ns.store(started, Ordering::Relaxed);
        h.epoch
            .store(site.plan.as_ref().map_or(0, |p| p.epoch), Ordering::Relaxed);
    }
    let initial_epoch = site.plan.as_ref().map_or(0, |p| p.epoch);
    let ctl = if c.control {
        Some(Arc::new(CtlRegion::create(
            &ctl_path(&c.name),
            u32::try_from(workers)?,
            64,
            initial_epoch,
        )?))
    } else {
        None
    };
    let mirror = Arc::new(MirrorRegion::create(&mirror_path(&c.name), workers)?);
    Ok(Regions {
        stop: Arc::new(AtomicBool::new(false)),
        stats,
        flows,
        ctl,
        mirror,
    })
}

/// How late a paced departure may be and still be made up: `sleeps` of the
/// worker's idle sleeps of `sleep_us`, at least 100 us.
pub fn pacing_max_lag_ns(sleep_us: u32, sleeps: u32) -> u64 {
    u64::from(sleep_us)
        .saturating_mul(u64::from(sleeps))
        .saturating_mul(1_000)
        .max(100_000)
}

/// The worker's memory and ports: the UMEM, its frame pool, the AF_XDP
/// ports (opened here, on one shared UMEM), the io_uring uplinks' specs
/// (their ports are created on the worker thread), and the frames reserved
/// for the stage.
struct Ports {
    arena: Arena,
    pool: FramePool,
    /// One slot per port (LAN first); `None`: an io_uring uplink.
    ports: Vec<Option<Box<dyn Port + Send>>>,
    uring_specs: Vec<(u16, UringConfig)>,
    reserve: Vec<u64>,
    /// Port names, LAN first, for the stats.
    names: Vec<String>,
}

/// Phase 3: opens the AF_XDP ports on one shared UMEM and fills their rings;
/// sets aside `reserve_frames` frames for the stage.
fn open_ports(
    c: &GatewayConfig,
    filters: &Filters,
    reserve_frames: usize,
    queue: u32,
) -> anyhow::Result<Ports> {
    let site = &c.site;
    let nports = 1 + site.uplinks.len();
    let arena = Arena::new(c.frames, 2048, 256, true)?;
    let mut pool = FramePool::new(&arena);
    let mut lan_cfg = AfXdpConfig::new(&site.site.lan_interface, queue);
    lan_cfg.bind = c.bind;
    let mut p_lan = AfXdpPort::open(&lan_cfg, 0, &arena, None, Some(&filters.lan))?;
    let share = (c.frames / 2 / u32::try_from(nports).unwrap_or(1)).min(lan_cfg.fill_size);
    p_lan.set_fill_target(share);
    let mut names = vec![p_lan.name().to_string()];
    let mut xdp_ports: Vec<AfXdpPort> = Vec::new();
    let mut uring_specs: Vec<(u16, UringConfig)> = Vec::new();
    for (ui, u) in site.uplinks.iter().enumerate() {
        let idx = u16::try_from(ui + 1).unwrap_or(u16::MAX);
        match u.backend {
            Backend::AfXdp => {
                let mut cfg = AfXdpConfig::new(&u.interface, queue);
                cfg.bind = c.bind;
                let xdp = filters.uplinks.get(ui).and_then(Option::as_ref);
                let mut p = AfXdpPort::open(&cfg, idx, &arena, Some(&p_lan), xdp)?;
                p.set_fill_target(share);
                names.push(p.name().to_string());
                xdp_ports.push(p);
            }
            Backend::IoUring => {
                let mut uc = UringConfig::new(SocketAddr::new(u.local_address, GENEVE_PORT), idx);
                uc.device = Some(u.interface.clone());
                uc.ring_entries = 1024;
                uc.buf_group = idx;
                names.push(format!("{} (io_uring {})", u.interface, uc.local));
                uring_specs.push((idx, uc));
            }
        }
    }
    p_lan.maintain(&mut pool);
    for p in &mut xdp_ports {
        p.maintain(&mut pool);
    }
    let reserve: Vec<u64> = (0..reserve_frames).filter_map(|_| pool.alloc()).collect();
    // The AF_XDP ports move to the worker thread; io_uring ports must be
    // created there (their ring belongs to the thread that submits).
    let mut ports: Vec<Option<Box<dyn Port + Send>>> = Vec::with_capacity(nports);
    ports.push(Some(Box::new(p_lan)));
    let mut xdp_iter = xdp_ports.into_iter();
    for u in &site.uplinks {
        match u.backend {
            Backend::AfXdp => {
                ports.push(xdp_iter.next().map(|p| Box::new(p) as Box<dyn Port + Send>))
            }
            Backend::IoUring => ports.push(None),
        }
    }
    Ok(Ports {
        arena,
        pool,
        ports,
        uring_specs,
        reserve,
        names,
    })
}

/// The stage the worker runs: the gateway, its control channel (when a
/// control may attach) and its per-flow counters.
fn gateway_stage(
    c: &GatewayConfig,
    gw: Gateway,
    regions: &Regions,
    started: Nanos,
    worker: usize,
    sessions: Arc<[std::sync::atomic::AtomicU64]>,
) -> anyhow::Result<GatewayStage> {
    let chan = match &regions.ctl {
        Some(r) => {
            let port = r.worker_port(worker)?;
            let shape = crate::plan::PlanShape::from_config(&c.site);
            // The site file's plan runs under its epoch (the region's active word starts there).
            let epoch = c.site.plan.as_ref().map_or(0, |p| p.epoch);
            let asm = PlanAssembler::new(shape, 2_000_000_000).with_running_epoch(epoch);
            Some(Channel {
                chan: WorkerChannel::new(port, asm),
            })
        }
        None => None,
    };
    Ok(GatewayStage {
        gw,
        chan,
        flows: regions.flows.clone(),
        worker,
        now: 0,
        next_step: 0,
        next_report: 0,
        step_every: 1_000_000,
        report_every: u64::try_from(c.report_every.as_nanos()).unwrap_or(100_000_000),
        flow_buf: Vec::with_capacity(c.site.flows.len()),
        plan_since: started,
        reload: Arc::new(ReloadSlot::default()),
        mirror: MirrorTap::new(regions.mirror.clone(), worker)?,
        sessions,
    })
}

/// Phase 5: the worker thread, pinned to its core: creates the io_uring
/// ports, then runs the stage until `stop`. Returns once it is running (or
/// with the error that kept it from starting).
fn spawn_worker(
    c: &GatewayConfig,
    ports: Ports,
    stage: GatewayStage,
    regions: &Regions,
    index: usize,
    core: Option<usize>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let idle = c.idle;
    let (stop, stats) = (regions.stop.clone(), regions.stats.clone());
    let Ports {
        arena,
        pool,
        ports,
        uring_specs,
        ..
    } = ports;
    let worker = std::thread::Builder::new()
        .name(format!("mg-gw{index}-{}", c.name))
        .spawn(move || {
            if let Some(core) = core
                && !pin_to_core(core)
            {
                tracing::warn!(
                    core,
                    worker = index,
                    "gateway worker: could not pin to its core"
                );
            }
            let mut pool = pool;
            let mut all: Vec<Box<dyn Port>> = Vec::with_capacity(ports.len());
            let mut specs = uring_specs.into_iter();
            for slot in ports {
                match slot {
                    Some(p) => all.push(p),
                    None => {
                        let Some((_, uc)) = specs.next() else {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("internal: uplink spec")));
                            return;
                        };
                        // SAFETY: the port is created on the thread that
                        // drives it and dropped before the arena (the
                        // worker drops ports first).
                        match unsafe { UringPort::new(&uc, &arena, &mut pool) } {
                            Ok(p) => all.push(Box::new(p)),
                            Err(e) => {
                                let _ = ready_tx.send(Err(anyhow::anyhow!(
                                    "io_uring uplink on {}: {e}",
                                    uc.local
                                )));
                                return;
                            }
                        }
                    }
                }
            }
            let mut w = Worker::new(arena, pool, all, stage, idle);
            let _ = ready_tx.send(Ok(()));
            w.run(&stop, stats.worker(index));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(worker),
        Ok(Err(e)) => {
            let _ = worker.join();
            Err(e)
        }
        Err(_) => {
            let _ = worker.join();
            anyhow::bail!("gateway worker exited during start-up");
        }
    }
}

/// Housekeeping of the control region: repairs a smashed header once a
/// second, until `stop`.
fn spawn_housekeeping(
    c: &GatewayConfig,
    r: Arc<CtlRegion>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name(format!("mg-ctl-{}", c.name))
        .spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                n += 1;
                if n.is_multiple_of(20) && r.verify_and_repair() {
                    tracing::info!("control region repaired");
                }
            }
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lag made up: the gateway's default 2 sleeps of 50 us is the 100 us floor, the
    /// demo's topology 10 sleeps of 500 us 5 ms; no overflow on absurd flags.
    #[test]
    fn late_departures_are_made_up_for_the_configured_sleeps() {
        let example = include_str!("../../../docs/examples/site-a.toml");
        let site = Config::from_toml_str(example, "site-a.toml").expect("example");
        assert_eq!(GatewayConfig::new(site).pacing_lag_sleeps, 2);
        assert_eq!(pacing_max_lag_ns(50, 2), 100_000);
        assert_eq!(pacing_max_lag_ns(500, 2), 1_000_000);
        assert_eq!(pacing_max_lag_ns(500, 10), 5_000_000);
        assert_eq!(pacing_max_lag_ns(0, 10), 100_000);
        assert_eq!(pacing_max_lag_ns(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn the_site_configuration_sets_the_session_idle_timeout() {
        let example = include_str!("../../../docs/examples/site-a.toml");
        let site = Config::from_toml_str(example, "site-a.toml").expect("example");
        assert_eq!(
            GatewayConfig::new(site).settings.classifier.idle_timeout,
            crate::classify::DEFAULT_IDLE_TIMEOUT_NS
        );
        let text = example.replacen(
            "# session_idle_timeout_seconds = 30",
            "session_idle_timeout_seconds = 7",
            1,
        );
        let site = Config::from_toml_str(&text, "site-a.toml").expect("edited");
        assert_eq!(
            GatewayConfig::new(site).settings.classifier.idle_timeout,
            7 * crate::sys::SEC
        );
    }

    #[test]
    fn the_site_configuration_sets_montras_tunables() {
        let example = include_str!("../../../docs/examples/site-a.toml");
        let text = example.replacen(
            "# [montra]\n# near_target_gain = 1.5",
            "[montra]\nnear_target_gain = 0.75\nbest_effort_mbps = 4",
            1,
        );
        let site = Config::from_toml_str(&text, "site-a.toml").expect("edited");
        let s = GatewayConfig::new(site).settings;
        assert_eq!(s.controller.near_max_gain, 0.75);
        assert_eq!(s.best_effort_pps, 400.0, "4 Mbit/s in units of 1250 B");
        assert_eq!(s.cap_factor, Settings::default().cap_factor);
    }
}
