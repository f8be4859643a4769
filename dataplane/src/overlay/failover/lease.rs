//! The control's lease over the paths: while a control process sent a
//! probe command or an assignment within [`CONTROL_LEASE_NS`] it decides;
//! its assignments and marks come in here, the probe outcomes and path
//! events it waits for queue here.

use super::probes::{CONTROL_PROBE_SLOTS, ControlProbe};
use super::{
    FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind, ProbeOutcome,
};
use crate::engine::Nanos;
use crate::overlay::Gateway;
use crate::sys::rng::SplitMix64;

/// A control process drives the paths for this long after its last probe
/// command or assignment.
pub const CONTROL_LEASE_NS: u64 = 3_000_000_000;
/// Outcomes and events waiting for the application to send them.
const QUEUE_CAP: usize = 256;

/// The control's side of the path state: probe commands, outcomes and
/// events for it, its lease.
#[derive(Clone, Debug)]
pub(crate) struct ControlPaths {
    pub(crate) slots: Box<[ControlProbe; CONTROL_PROBE_SLOTS]>,
    pub(crate) outcomes: Vec<ProbeOutcome>,
    pub(crate) events: Vec<(u32, PathEventKind, Nanos)>,
    /// Last probe command or assignment.
    pub(crate) last_command: Option<Nanos>,
    /// The control drove the paths at the last timer run.
    pub(crate) was_driven: bool,
    /// Slots carrying out a command.
    pub(crate) busy: usize,
    /// Draws the keys of the probe nonces (`probes::EchoWindow`).
    pub(crate) nonce_keys: SplitMix64,
}

impl ControlPaths {
    /// Empty; the probe nonce keys drawn from a generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            slots: Box::new([ControlProbe::default(); CONTROL_PROBE_SLOTS]),
            outcomes: Vec::with_capacity(QUEUE_CAP),
            events: Vec::with_capacity(QUEUE_CAP),
            last_command: None,
            was_driven: false,
            busy: 0,
            nonce_keys: SplitMix64::new(seed),
        }
    }
}

impl Gateway {
    /// Whether a control process drives the paths now (it holds the lease;
    /// see the `failover` module documentation).
    pub fn control_drives_paths(&self, now: Nanos) -> bool {
        self.control_paths
            .last_command
            .is_some_and(|last| now.saturating_sub(last) < CONTROL_LEASE_NS)
    }

    /// Takes the finished probe commands' outcomes (oldest first).
    pub fn drain_probe_outcomes(&mut self, mut f: impl FnMut(&ProbeOutcome) -> bool) {
        let q = &mut self.control_paths.outcomes;
        let n = q.iter().take_while(|o| f(o)).count();
        q.drain(..n);
    }

    /// Takes the path events (oldest first); `f` returns false to stop
    /// (the rest stay queued).
    pub fn drain_path_events(&mut self, mut f: impl FnMut(u32, PathEventKind, Nanos) -> bool) {
        let q = &mut self.control_paths.events;
        let n = q.iter().take_while(|e| f(e.0, e.1, e.2)).count();
        q.drain(..n);
    }

    pub(super) fn push_event(&mut self, path: u32, kind: PathEventKind, now: Nanos) {
        let q = &mut self.control_paths.events;
        if q.len() < QUEUE_CAP {
            q.push((path, kind, now));
        } else {
            self.stats.control_queue_full += 1;
        }
    }

    pub(super) fn push_outcome(&mut self, o: ProbeOutcome) {
        let q = &mut self.control_paths.outcomes;
        if q.len() < QUEUE_CAP {
            q.push(o);
        } else {
            self.stats.control_queue_full += 1;
        }
    }

    /// Marks a path up on the control's word (it answered the control's
    /// probes even if ours were lost).
    fn vouch(&mut self, peer: usize, i: usize, now: Nanos) {
        if let Some(p) = self.peers.get_mut(peer).and_then(|pp| pp.paths.get_mut(i)) {
            p.unacked.clear();
            p.health.held = false;
            if !p.health.up {
                p.health.up = true;
                p.health.up_since = now;
                p.health.last_echo = now;
            }
        }
    }

    /// A flow-to-path assignment from the control process: `flow` rides
    /// `path` (while it is up), or follows its peer's default again
    /// ([`PATH_NONE`]); [`FLOW_PEER_DEFAULT`] sets the peer's default path;
    /// [`FLOW_MARK_DOWN`] / [`FLOW_MARK_UP`] hold a path down or usable in
    /// the dataplane's own view (what its ack-gap reflex falls back on).
    /// An assignment naming an unknown flow or path, or a path toward
    /// another peer than the flow's next site, is counted and ignored.
    pub fn on_assign(&mut self, flow: u32, path: u32, now: Nanos) {
        self.control_paths.last_command = Some(now);
        if flow == FLOW_MARK_DOWN || flow == FLOW_MARK_UP {
            let Some((peer, i)) = self.checked_ref(path) else {
                self.stats.assign_bad += 1;
                return;
            };
            if flow == FLOW_MARK_UP {
                self.vouch(peer, i, now);
            } else {
                let p = &mut self.peers[peer].paths[i];
                p.health.held = true;
                if p.health.up {
                    p.health.up = false;
                    p.health.downs += 1;
                }
                p.unacked.clear();
            }
            self.stats.assigned += 1;
            return;
        }
        if flow == FLOW_PEER_DEFAULT {
            let Some((peer, i)) = self.checked_ref(path) else {
                self.stats.assign_bad += 1;
                return;
            };
            self.vouch(peer, i, now);
            let old = self.peers[peer].active;
            if old != Some(i) {
                if let Some(o) = old {
                    self.hold_for_move(peer, o, i, None, now);
                }
                self.peers[peer].set_active(Some(i), now);
            }
            self.stats.assigned += 1;
            return;
        }
        let Some(fi) = usize::try_from(flow).ok().filter(|&f| f < self.flows.len()) else {
            self.stats.assign_bad += 1;
            return;
        };
        if path == PATH_NONE {
            // Back to the peer's default: a move like any other.
            if let Some(peer) = self.flows[fi].next_peer
                && let Some(pp) = self.peers.get(peer)
                && let (Some((o, _)), Some(n)) = (pp.path_for(self.flows[fi].path), pp.active)
            {
                self.hold_for_move(peer, o, n, Some(fi), now);
            }
            self.flows[fi].path = None;
            self.stats.assigned += 1;
            return;
        }
        let Some((peer, i)) = self.checked_ref(path) else {
            self.stats.assign_bad += 1;
            return;
        };
        if self.flows[fi].next_peer != Some(peer) {
            self.stats.assign_bad += 1;
            return;
        }
        let old = self.peers[peer]
            .path_for(self.flows[fi].path)
            .map(|(o, _)| o);
        if let Some(o) = old {
            self.hold_for_move(peer, o, i, Some(fi), now);
        }
        self.vouch(peer, i, now);
        self.flows[fi].path = u16::try_from(i).ok();
        self.stats.assigned += 1;
    }
}
