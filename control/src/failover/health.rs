//! The per-path state machine: up / suspect / down with hysteresis.
//!
//! ```text
//!                 failure (lost probe, bad data report) or ack gap
//!        +------+ -----------------------------------------> +---------+
//!  ----> |  UP  |                                            | SUSPECT | <-- new path
//!        +------+ <----------------------------------------- +---------+
//!           ^        S consecutive successes                   |
//!           |                                                  | K consecutive failures
//!           |  M consecutive successes spanning >= R           | or T without a success
//!           |                                                  v
//!           |                                              +------+
//!           +--------------------------------------------- | DOWN | <-- carrier loss (any state)
//!                                                          +------+
//! ```
//!
//! S = `suspect_clear_successes`, K = `down_after_failures`, T = `health.down_after_ns`,
//! M = `recover_successes`, R = `recover_min_time`. A failure in the middle of a recovery run
//! restarts it, so a path that answers only now and then never comes back up (no flapping).

use super::config::PathConfig;
use super::ids::Nanos;

/// Health state of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathState {
    /// Working as far as we know.
    Up,
    /// A failure signal was seen (or the path is new and unverified): still usable, but the
    /// manager looks for an alternative if it carries traffic.
    Suspect,
    /// Failed: no traffic, probed only for exploration.
    Down,
}

/// The state machine and its counters.
#[derive(Clone, Debug)]
pub struct Health {
    state: PathState,
    since: Nanos,
    consec_fail: u32,
    consec_succ: u32,
    succ_run_start: Nanos,
    last_success: Option<Nanos>,
    last_failure: Option<Nanos>,
    /// The first probe sent since the last success or state change: silence counts from it.
    probed: Option<Nanos>,
}

impl Health {
    /// A new, unverified path (suspect) at time `now`.
    pub fn new(now: Nanos) -> Self {
        Self {
            state: PathState::Suspect,
            since: now,
            consec_fail: 0,
            consec_succ: 0,
            succ_run_start: now,
            last_success: None,
            last_failure: None,
            probed: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> PathState {
        self.state
    }

    /// When the current state was entered.
    pub fn since(&self) -> Nanos {
        self.since
    }

    /// Time of the last success.
    pub fn last_success(&self) -> Option<Nanos> {
        self.last_success
    }

    /// Time of the last failure signal.
    pub fn last_failure(&self) -> Option<Nanos> {
        self.last_failure
    }

    /// Consecutive successes so far (0 after any failure).
    pub fn consecutive_successes(&self) -> u32 {
        self.consec_succ
    }

    /// Consecutive failures so far (0 after any success).
    pub fn consecutive_failures(&self) -> u32 {
        self.consec_fail
    }

    fn enter(&mut self, s: PathState, now: Nanos) {
        if self.state != s {
            self.state = s;
            self.since = now;
            self.probed = None;
        }
    }

    /// A probe went out on the path (the silence rule counts from the first since the last
    /// success or state change).
    pub fn on_probe_sent(&mut self, now: Nanos) {
        self.probed.get_or_insert(now);
    }

    /// Up on the dataplane's word (it carries traffic on the path and saw it answer), without
    /// a success run of our own.
    pub fn adopt_up(&mut self, now: Nanos) {
        self.consec_fail = 0;
        self.last_success = Some(now);
        if self.state != PathState::Up {
            self.enter(PathState::Up, now);
        }
    }

    /// A success (probe answered, good data report).
    pub fn on_success(&mut self, now: Nanos, cfg: &PathConfig) {
        self.consec_fail = 0;
        if self.consec_succ == 0 {
            self.succ_run_start = now;
        }
        self.consec_succ = self.consec_succ.saturating_add(1);
        self.last_success = Some(now);
        self.probed = None;
        match self.state {
            PathState::Up => {}
            PathState::Suspect => {
                if self.consec_succ >= cfg.suspect_clear_successes {
                    self.enter(PathState::Up, now);
                }
            }
            PathState::Down => {
                if self.consec_succ >= cfg.recover_successes
                    && now.saturating_sub(self.succ_run_start) >= cfg.recover_min_time
                {
                    self.enter(PathState::Up, now);
                }
            }
        }
    }

    /// A failure (probe lost, bad data report).
    pub fn on_failure(&mut self, now: Nanos, cfg: &PathConfig) {
        self.consec_succ = 0;
        self.consec_fail = self.consec_fail.saturating_add(1);
        self.last_failure = Some(now);
        match self.state {
            PathState::Up => self.enter(PathState::Suspect, now),
            PathState::Suspect => {
                if self.consec_fail >= cfg.down_after_failures {
                    self.enter(PathState::Down, now);
                }
            }
            PathState::Down => {}
        }
    }

    /// A suspicion without a counted failure (ack gap on an active path).
    pub fn on_suspect_signal(&mut self, now: Nanos) {
        self.consec_succ = 0;
        self.last_failure = Some(now);
        if self.state == PathState::Up {
            self.enter(PathState::Suspect, now);
        }
    }

    /// Certain failure (carrier loss of the local uplink).
    pub fn force_down(&mut self, now: Nanos) {
        self.consec_succ = 0;
        self.last_failure = Some(now);
        self.enter(PathState::Down, now);
    }

    /// When a suspect path becomes down for silence: T after the first probe sent since its
    /// last success (or since it became suspect) that nothing answered. A path we did not probe
    /// is not silent: on Abilene a site's uplink budget went to ~40 new candidates at once
    /// (most of them unreachable), a working direct path waited 2 s for its next probe, and the
    /// silence rule downed it (PFO re-planned around a link that worked).
    pub fn silence_deadline(&self, cfg: &PathConfig) -> Option<Nanos> {
        if self.state != PathState::Suspect {
            return None;
        }
        let base = self.last_success.map_or(self.since, |s| s.max(self.since));
        self.probed
            // Counted from a probe sent, not from the last answer: its own
            // timeout (RTT-based, `probe_timeout`) already allows for the
            // round trip, so no RTT is added here.
            .map(|p| cfg.health.silence_deadline(p.max(base), 0))
    }

    /// Applies the silence rule (T without answer). Returns true if the state changed.
    pub fn tick(&mut self, now: Nanos, cfg: &PathConfig) -> bool {
        match self.silence_deadline(cfg) {
            Some(d) if now >= d => {
                self.consec_succ = 0;
                self.enter(PathState::Down, now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ids::{MS, SEC};
    use super::*;

    #[test]
    fn hysteresis() {
        let cfg = PathConfig::default();
        let mut h = Health::new(0);
        assert_eq!(h.state(), PathState::Suspect);
        h.on_success(MS, &cfg);
        assert_eq!(h.state(), PathState::Suspect);
        h.on_success(2 * MS, &cfg);
        assert_eq!(h.state(), PathState::Up);
        h.on_failure(3 * MS, &cfg);
        assert_eq!(h.state(), PathState::Suspect);
        h.on_failure(4 * MS, &cfg);
        h.on_failure(5 * MS, &cfg);
        assert_eq!(h.state(), PathState::Down);
        // M successes but too fast: stays down.
        for i in 0..5 {
            h.on_success(6 * MS + i * MS, &cfg);
        }
        assert_eq!(h.state(), PathState::Down);
        // A failure restarts the run.
        h.on_failure(20 * MS, &cfg);
        h.on_success(SEC, &cfg);
        h.on_success(SEC + 500 * MS, &cfg);
        assert_eq!(h.state(), PathState::Down);
        h.on_success(2 * SEC, &cfg);
        assert_eq!(h.state(), PathState::Up);
        assert_eq!(h.since(), 2 * SEC);
    }

    #[test]
    fn silence_and_carrier() {
        let cfg = PathConfig::default();
        let mut h = Health::new(0);
        // Not probed: not silent, however long.
        assert!(!h.tick(10 * cfg.health.down_after_ns, &cfg));
        assert_eq!(h.state(), PathState::Suspect);
        let mut h = Health::new(0);
        h.on_probe_sent(5);
        h.on_probe_sent(7);
        assert!(!h.tick(cfg.health.down_after_ns + 4, &cfg));
        assert!(h.tick(cfg.health.down_after_ns + 5, &cfg));
        assert_eq!(h.state(), PathState::Down);
        assert_eq!(h.silence_deadline(&cfg), None);
        let mut h = Health::new(0);
        h.on_success(1, &cfg);
        h.on_success(2, &cfg);
        h.on_suspect_signal(3);
        assert_eq!(h.state(), PathState::Suspect);
        h.force_down(4);
        assert_eq!(h.state(), PathState::Down);
    }
}
