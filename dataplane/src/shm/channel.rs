//! The worker's use of the channel, per loop iteration: look at the control's
//! session word, drain a bounded number of commands into the
//! [`PlanAssembler`], publish staging, look at the active-epoch word, switch,
//! acknowledge, republish both epochs, beat. Thin glue over
//! [`WorkerPort`]; all decisions are the assembler's.

use super::msg::{AckStatus, Command, Telemetry};
use super::plan::{Event, PlanAssembler, Refusal};
use super::region::{Recv, WorkerPort};
use crate::plan::PlanTable;

/// What one [`WorkerChannel::step`] did, for the caller to log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Commands read.
    pub received: u32,
    /// Epoch switched to, if any.
    pub switched: Option<u64>,
    /// Epoch staged, if any.
    pub staged: Option<u64>,
    /// The last refusal, if any.
    pub refused: Option<(u64, Refusal)>,
    /// The rings were reset (corruption).
    pub ring_reset: bool,
    /// Messages that did not decode.
    pub bad: u32,
}

/// A worker's port and plan state.
pub struct WorkerChannel {
    port: WorkerPort,
    asm: PlanAssembler,
}

impl WorkerChannel {
    /// Joins a port and an assembler. The port's words are set to the
    /// assembler's running epoch.
    pub fn new(port: WorkerPort, asm: PlanAssembler) -> Self {
        port.set_running(asm.active().epoch);
        Self { port, asm }
    }

    /// The running plan.
    pub fn plan(&self) -> &PlanTable {
        self.asm.active()
    }

    /// The assembler (counters, staged epoch).
    pub fn assembler(&self) -> &PlanAssembler {
        &self.asm
    }

    /// The port (telemetry).
    pub fn port(&mut self) -> &mut WorkerPort {
        &mut self.port
    }

    fn ack(&mut self, epoch: u64, status: AckStatus) {
        let worker = u32::try_from(self.port.index()).unwrap_or(u32::MAX);
        // Lossy: the header words are the authoritative acknowledgement.
        let _ = self.port.send(&Telemetry::PlanAck {
            worker,
            epoch,
            status,
        });
    }

    fn reset(&mut self, r: &mut StepReport) {
        self.asm.count_ring_error();
        r.ring_reset = self.port.reset_rings().is_ok();
    }

    fn check_active(&mut self, now_ns: u64, r: &mut StepReport) {
        match self.asm.on_active_epoch(self.port.active_epoch(), now_ns) {
            Event::Switched(e) => {
                self.port.set_running(e);
                r.switched = Some(e);
                self.ack(e, AckStatus::Running);
            }
            Event::Refused(e, why) => r.refused = Some((e, why)),
            Event::None | Event::Staged(_) => {}
        }
    }

    /// One iteration: at most `budget` commands; non-plan commands
    /// (assignments, probes) go to `other`. Never blocks.
    pub fn step(
        &mut self,
        now_ns: u64,
        budget: u32,
        mut other: impl FnMut(&Command),
    ) -> StepReport {
        let mut r = StepReport::default();
        if self.port.reset_requested() || self.port.telemetry_corrupt() {
            self.reset(&mut r);
        }
        self.asm.on_session(self.port.control_session());
        while r.received < budget {
            match self.port.recv() {
                Recv::Empty => break,
                Recv::Corrupt => {
                    self.reset(&mut r);
                    break;
                }
                Recv::Bad(_) => {
                    r.received += 1;
                    r.bad += 1;
                    self.asm.count_decode_error();
                }
                Recv::Cmd(c) => {
                    r.received += 1;
                    if matches!(c, Command::PlanCommit { .. }) {
                        // A commit published after the flip of the staged
                        // epoch must not replace it before we switch to it.
                        self.check_active(now_ns, &mut r);
                    }
                    match self.asm.on_command(&c, now_ns) {
                        Event::Staged(e) => {
                            self.port.set_staged(e);
                            r.staged = Some(e);
                            self.ack(e, AckStatus::Staged);
                        }
                        Event::Refused(e, why) => {
                            r.refused = Some((e, why));
                            self.ack(e, AckStatus::Refused);
                        }
                        Event::None | Event::Switched(_) => {
                            if !matches!(c, Command::PlanChunk(_) | Command::PlanCommit { .. }) {
                                other(&c);
                            }
                        }
                    }
                }
            }
        }
        self.port.release();
        self.check_active(now_ns, &mut r);
        let running = self.asm.active().epoch;
        self.port
            .publish_epochs(self.asm.staged_epoch().unwrap_or(running), running);
        self.port.beat(now_ns, self.asm.counters().refused());
        self.port.flush();
        r
    }
}
