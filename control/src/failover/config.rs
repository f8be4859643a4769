//! Configuration of the path manager, with defaults tuned for site gateways whose paths have
//! RTTs of a few to a few hundred milliseconds. See `docs/paths.md` for the reasoning.

use mongate_dataplane::overlay::failover::HealthPolicy;

use super::ids::{MS, Nanos, SEC, UplinkId};

/// One local uplink: its capacity (for the probe budget) and its configured cost.
#[derive(Clone, Debug, PartialEq)]
pub struct UplinkConfig {
    /// Uplink id used in [`PathKey`](super::PathKey)s.
    pub id: UplinkId,
    /// Capacity in bytes per second (the smaller of up and down).
    pub capacity_bytes_per_s: u64,
    /// Configured cost of using this uplink (e.g. a metered link), in nanoseconds of RTT
    /// equivalent: it is added to the path's RTT when ranking.
    pub cost: Nanos,
}

/// Parameters of the state machine, the ranking, the probing and the races.
#[derive(Clone, Debug, PartialEq)]
pub struct PathConfig {
    /// Local uplinks. Paths may only use these.
    pub uplinks: Vec<UplinkConfig>,
    /// Outcomes remembered per path (success history bitmap), `1..=64`.
    pub history_len: u32,
    /// Suspect -> up after this many consecutive successes.
    pub suspect_clear_successes: u32,
    /// Suspect -> down after this many consecutive failures (K).
    pub down_after_failures: u32,
    /// The timers the dataplane's reflex decides by too: background probe interval of an up path
    /// (also the active one), suspect -> down after `down_after_ns` without a success (T), return
    /// to a better path only once it has been up `failback_after_ns`. `ack_gap_ns` is not used
    /// here: the dataplane times ack gaps and reports them as path events.
    pub health: HealthPolicy,
    /// Down -> up needs this many consecutive successes (M) ...
    pub recover_successes: u32,
    /// ... spread over at least this long (first to last success of the run).
    pub recover_min_time: Nanos,
    /// Background probe interval of a suspect path.
    pub probe_interval_suspect: Nanos,
    /// Probe interval of a down path that has started answering (recovery check).
    pub probe_interval_recovering: Nanos,
    /// First exploration interval of a down path; doubles per unanswered probe ...
    pub probe_interval_down_min: Nanos,
    /// ... up to this.
    pub probe_interval_down_max: Nanos,
    /// Random spread added to each probe interval, in percent of it (desynchronises probes).
    pub probe_jitter_pct: u32,
    /// Probe timeout before the first RTT sample.
    pub probe_timeout_initial: Nanos,
    /// Lower clamp of the probe timeout.
    pub probe_timeout_min: Nanos,
    /// Upper clamp of the probe timeout.
    pub probe_timeout_max: Nanos,
    /// Probe size on the wire in bytes (for the budget).
    pub probe_size: u32,
    /// Probe budget per uplink, in parts per million of its capacity.
    pub budget_ppm: u32,
    /// Share of the budget reserved for exploring down paths, in parts per million of the budget.
    pub explore_ppm: u32,
    /// Least budget per uplink, bytes/s, whatever its capacity: a slow uplink
    /// with many candidate paths (a dozen peers, each also a waypoint) needs
    /// a probe a second per path and races; 0.5 % of 2 Mbit/s is 13 probes/s.
    pub budget_floor_bytes_per_s: u64,
    /// Token bucket depth, as this much time of budget (at least four probes).
    pub budget_burst: Nanos,
    /// Candidates probed per race (waypoint selection).
    pub race_width: u32,
    /// Delay between two race probes (best first).
    pub race_stagger: Nanos,
    /// First retry delay after a race where nothing answered; doubles per failed race ...
    pub race_backoff_min: Nanos,
    /// ... up to this.
    pub race_backoff_max: Nanos,
    /// Data acked on the active path no longer ago than this (a telemetry report with new
    /// acks, or a good data feedback report) vouches for it: a lost probe alone does not make
    /// it suspect nor start a race then.
    pub data_vouch: Nanos,
    /// A data feedback report with at least this loss fraction counts as a failure ...
    pub bad_feedback_loss: f64,
    /// ... and at least this many packets lost (a report of a few packets at a bad rate is
    /// ignored: it neither fails the path nor moves its loss average) ...
    pub bad_feedback_min_lost: u64,
    /// ... once this many reports in a row had it (at least 1) ...
    pub bad_feedback_reports: u32,
    /// ... over at least this long (from the first of them).
    pub bad_feedback_hold: Nanos,
    /// EWMA gain for loss samples.
    pub loss_alpha: f64,
    /// A path whose loss EWMA is at least this is reported degraded.
    pub degrade_loss: f64,
    /// RTT assumed for ranking before a path's first sample.
    pub unknown_rtt: Nanos,
    /// Cost added when ranking a path through a waypoint (relaying, extra state).
    pub waypoint_penalty: Nanos,
    /// Return to a better path only once it has been up `health.failback_after_ns`, and its rank
    /// cost is below `(1 - margin)` times the active path's.
    pub return_margin: f64,
    /// ... and its last this many probes were all answered.
    pub return_clean_probes: u32,
    /// A path that comes back from down after a clean cut (its remembered probes before the
    /// outage had at most `repair_old_losses` losses, every probe since the recovery was
    /// answered) may win its traffic back after being up this long, instead of
    /// `health.failback_after_ns` ...
    pub repair_failback_after: Nanos,
    /// ... with its last this many probes answered (the recovery run included), instead of
    /// `return_clean_probes` ...
    pub repair_clean_probes: u32,
    /// ... allowing this many losses before the outage (a path with more is lossy, not cut) ...
    pub repair_old_losses: u32,
    /// ... or this many when every direct path of the destination had failed and its traffic
    /// rides a detour (the outage forced it there; before it, a direct link that the plan's
    /// flows filled to the loss budget lost a probe now and then) ...
    pub repair_old_losses_forced: u32,
    /// ... if the outage lasted at least this many lost probes in a row (shorter runs happen
    /// by chance on a lossy path) ...
    pub repair_min_outage_probes: u32,
    /// ... unless it was already repaired this way less than this long before (it flaps: the
    /// slow rule then holds).
    pub repair_damping: Nanos,
    /// Whether such an optimisation move may go to a path through a waypoint (false: only to
    /// a direct path; a waypoint is then taken on failures only).
    pub return_via_waypoint: bool,
    /// Minimum time between two optimisation moves of one destination (failover moves are
    /// never delayed).
    pub min_dwell: Nanos,
    /// Period of the return-to-better-path evaluation.
    pub reeval_interval: Nanos,
    /// Minimum time between two link reports to PFO.
    pub report_min_interval: Nanos,
    /// RTT samples above this are absurd and dropped (counted).
    pub max_plausible_rtt: Nanos,
    /// Outstanding probes remembered per path; the oldest is declared lost beyond this.
    pub max_outstanding: u32,
    /// Bound of the action queue (the driver drains it after each call).
    pub action_queue_cap: u32,
    /// Bound on registered paths.
    pub max_paths: u32,
    /// First probe sequence number of every path; `None` draws one per path from the seed.
    pub initial_seq: Option<u32>,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            uplinks: Vec::new(),
            history_len: 32,
            suspect_clear_successes: 2,
            down_after_failures: 3,
            health: HealthPolicy {
                probe_interval_ns: SEC,
                down_after_ns: 2 * SEC,
                ack_gap_ns: 0,
                failback_after_ns: 10 * SEC,
            },
            recover_successes: 3,
            recover_min_time: SEC,
            probe_interval_suspect: 200 * MS,
            probe_interval_recovering: 500 * MS,
            probe_interval_down_min: SEC,
            // A repaired path is seen within ~4 s plus the recovery's 3
            // probes (>= 1 s): a site that rejoins gets its traffic back in
            // ~5 s (demo --scenario partition). 96-B probes every 4 s cost
            // 0.2 kbit/s per down path.
            probe_interval_down_max: 4 * SEC,
            probe_jitter_pct: 10,
            probe_timeout_initial: SEC,
            probe_timeout_min: 30 * MS,
            probe_timeout_max: 2 * SEC,
            probe_size: 96,
            budget_ppm: 5_000,
            explore_ppm: 200_000,
            budget_floor_bytes_per_s: 0,
            budget_burst: SEC,
            race_width: 3,
            race_stagger: 10 * MS,
            race_backoff_min: 100 * MS,
            race_backoff_max: 5 * SEC,
            data_vouch: 200 * MS,
            bad_feedback_loss: 0.2,
            bad_feedback_min_lost: 1,
            bad_feedback_reports: 1,
            bad_feedback_hold: 0,
            loss_alpha: 0.125,
            degrade_loss: 0.2,
            unknown_rtt: 100 * MS,
            waypoint_penalty: 10 * MS,
            return_margin: 0.2,
            return_clean_probes: 32,
            // A partition healing: the direct path answers again after answering every probe
            // before the cut; its traffic comes back ~4 s after it is seen up (3 recovery
            // probes, 3 s up at one probe a second), not 32 s. A path that is merely lossy,
            // or was cut twice in 5 minutes, waits for the 32 clean probes.
            repair_failback_after: 3 * SEC,
            repair_clean_probes: 6,
            repair_old_losses: 1,
            // 4 of the 32 remembered (12.5 %): a full link's occasional drop passes, a lossy
            // path (20 % and more: `degrade_loss`) does not.
            repair_old_losses_forced: 4,
            // Suspect (3 lost at 200 ms) then down probes 1 and 2 s apart: a cut of ~3 s.
            repair_min_outage_probes: 5,
            repair_damping: 300 * SEC,
            return_via_waypoint: true,
            min_dwell: 5 * SEC,
            reeval_interval: SEC,
            report_min_interval: 500 * MS,
            max_plausible_rtt: 10 * SEC,
            max_outstanding: 8,
            action_queue_cap: 4096,
            max_paths: 65_536,
            initial_seq: None,
        }
    }
}

/// Why a configuration or a path registration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A parameter is out of its valid range.
    #[error("invalid path configuration: {0}")]
    Invalid(&'static str),
    /// Two uplinks share an id.
    #[error("duplicate uplink id {0:?}")]
    DuplicateUplink(UplinkId),
    /// A path names an uplink that is not configured.
    #[error("unknown uplink {0:?}")]
    UnknownUplink(UplinkId),
    /// The path is already registered.
    #[error("path already registered")]
    DuplicatePath,
    /// `max_paths` reached.
    #[error("too many paths")]
    TooManyPaths,
}

impl PathConfig {
    /// Checks every parameter; the manager refuses an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |c: bool, m| {
            if c {
                Err(ConfigError::Invalid(m))
            } else {
                Ok(())
            }
        };
        bad(
            !(1..=64).contains(&self.history_len),
            "history_len must be 1..=64",
        )?;
        bad(
            self.suspect_clear_successes == 0,
            "suspect_clear_successes must be > 0",
        )?;
        bad(
            self.down_after_failures == 0,
            "down_after_failures must be > 0",
        )?;
        bad(self.recover_successes == 0, "recover_successes must be > 0")?;
        bad(
            self.health.down_after_ns == 0,
            "health.down_after_ns must be > 0",
        )?;
        bad(
            self.health.probe_interval_ns == 0
                || self.probe_interval_suspect == 0
                || self.probe_interval_recovering == 0
                || self.probe_interval_down_min == 0,
            "probe intervals must be > 0",
        )?;
        bad(
            self.probe_interval_down_max < self.probe_interval_down_min,
            "probe_interval_down_max < probe_interval_down_min",
        )?;
        bad(
            self.probe_jitter_pct > 100,
            "probe_jitter_pct must be <= 100",
        )?;
        bad(
            self.probe_timeout_min == 0 || self.probe_timeout_max < self.probe_timeout_min,
            "probe timeouts must satisfy 0 < min <= max",
        )?;
        bad(self.probe_size == 0, "probe_size must be > 0")?;
        bad(
            self.budget_ppm == 0 || self.budget_ppm > 1_000_000,
            "budget_ppm must be 1..=1e6",
        )?;
        bad(self.explore_ppm > 1_000_000, "explore_ppm must be <= 1e6")?;
        bad(
            !(1..=16).contains(&self.race_width),
            "race_width must be 1..=16",
        )?;
        bad(
            self.race_backoff_min == 0 || self.race_backoff_max < self.race_backoff_min,
            "race backoff must satisfy 0 < min <= max",
        )?;
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        bad(
            !unit(self.bad_feedback_loss),
            "bad_feedback_loss must be in [0,1]",
        )?;
        bad(
            !unit(self.loss_alpha) || self.loss_alpha == 0.0,
            "loss_alpha must be in (0,1]",
        )?;
        bad(!unit(self.degrade_loss), "degrade_loss must be in [0,1]")?;
        bad(
            self.bad_feedback_reports == 0,
            "bad_feedback_reports must be at least 1",
        )?;
        bad(!unit(self.return_margin), "return_margin must be in [0,1]")?;
        bad(
            self.return_clean_probes > 64,
            "return_clean_probes must be <= 64",
        )?;
        bad(
            self.repair_clean_probes == 0 || self.repair_clean_probes > 64,
            "repair_clean_probes must be 1..=64",
        )?;
        bad(self.reeval_interval == 0, "reeval_interval must be > 0")?;
        bad(self.max_plausible_rtt == 0, "max_plausible_rtt must be > 0")?;
        bad(
            !(1..=1024).contains(&self.max_outstanding),
            "max_outstanding must be 1..=1024",
        )?;
        bad(self.action_queue_cap < 16, "action_queue_cap must be >= 16")?;
        bad(self.max_paths == 0, "max_paths must be > 0")?;
        let mut ids: Vec<UplinkId> = self.uplinks.iter().map(|u| u.id).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateUplink(w[0]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_refused() {
        assert_eq!(PathConfig::default().validate(), Ok(()));
        let c = PathConfig {
            history_len: 0,
            ..PathConfig::default()
        };
        assert!(c.validate().is_err());
        let c = PathConfig {
            loss_alpha: f64::NAN,
            ..PathConfig::default()
        };
        assert!(c.validate().is_err());
        let u = UplinkConfig {
            id: UplinkId(1),
            capacity_bytes_per_s: 1,
            cost: 0,
        };
        let c = PathConfig {
            uplinks: vec![u.clone(), u],
            ..PathConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::DuplicateUplink(UplinkId(1))));
    }
}
