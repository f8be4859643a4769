//! A [`Plan`] on the wire: its entries by configuration index, the checksum a
//! `PlanCommit` carries, the chunking, and the shape a worker validates
//! against (how many classes, which class each flow belongs to).

use crate::config::{ClassPlan, Config, FlowPlan, Plan, PlanError};

use super::msg::{CHUNK_ENTRIES, Command, PlanChunk, PlanEntry};

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Running FNV-1a 64 checksum over the epoch and the entries' words, in
/// order: what [`Command::PlanCommit`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// Starts the checksum of the plan of `epoch`.
    pub fn new(epoch: u64) -> Self {
        let mut c = Self(FNV_OFFSET);
        c.word(epoch);
        c
    }
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    /// Adds one entry.
    pub fn entry(&mut self, e: &PlanEntry) {
        for w in e.words() {
            self.word(w);
        }
    }
    /// The value.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The checksum of `entries` for `epoch`.
pub fn checksum(epoch: u64, entries: &[PlanEntry]) -> u64 {
    let mut c = Checksum::new(epoch);
    for e in entries {
        c.entry(e);
    }
    c.value()
}

/// What a worker checks a plan against: the number of classes and the class
/// index of each flow (from the running [`Config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanShape {
    /// Number of classes.
    pub classes: u32,
    /// Class index of flow `i`.
    pub flow_class: Vec<u32>,
}

impl PlanShape {
    /// The shape of a configuration (flows whose class is unknown, which the
    /// loader rejects anyway, get class `u32::MAX` and can never carry sessions).
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            classes: u32::try_from(cfg.classes.len()).unwrap_or(u32::MAX),
            flow_class: cfg
                .flows
                .iter()
                .map(|f| {
                    cfg.class_index(&f.class)
                        .and_then(|i| u32::try_from(i).ok())
                        .unwrap_or(u32::MAX)
                })
                .collect(),
        }
    }
    /// Number of flows.
    pub fn flows(&self) -> usize {
        self.flow_class.len()
    }
}

/// The entries of a plan, by configuration index: classes first, then flows.
/// The plan is validated against `cfg` first.
pub fn plan_entries(plan: &Plan, cfg: &Config) -> Result<Vec<PlanEntry>, PlanError> {
    plan.validate(cfg)?;
    let idx = |i: Option<usize>| i.and_then(|i| u32::try_from(i).ok()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(plan.classes.len() + plan.flows.len());
    for c in &plan.classes {
        out.push(PlanEntry::Class {
            class: idx(cfg.class_index(&c.id)),
            sessions: c.sessions,
        });
    }
    for f in &plan.flows {
        out.push(PlanEntry::Flow {
            flow: idx(cfg.flow_index(&f.id)),
            rate_mbps: f.rate_mbps,
            weight: f.weight,
        });
    }
    Ok(out)
}

/// The commands carrying the plan `entries` of `epoch`: the chunks, then the
/// commit. An empty plan is one empty chunk.
pub fn plan_commands(epoch: u64, entries: &[PlanEntry]) -> Vec<Command> {
    let chunks: Vec<&[PlanEntry]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(CHUNK_ENTRIES).collect()
    };
    let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for (i, c) in chunks.iter().enumerate() {
        let mut e = [PlanEntry::Class {
            class: 0,
            sessions: 0,
        }; CHUNK_ENTRIES];
        e[..c.len()].copy_from_slice(c);
        out.push(Command::PlanChunk(PlanChunk {
            epoch,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            total,
            count: u32::try_from(c.len()).unwrap_or(0),
            entries: e,
        }));
    }
    out.push(Command::PlanCommit {
        epoch,
        chunks: total,
        entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        checksum: checksum(epoch, entries),
    });
    out
}

/// A plan as a worker holds it: dense per-index arrays sized by the
/// [`PlanShape`] (unlisted classes and flows are zero).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerPlan {
    /// Epoch (0: the empty plan a worker starts with).
    pub epoch: u64,
    /// Admitted sessions per class index.
    pub sessions: Vec<u32>,
    /// Target rate per flow index, Mbit/s.
    pub rate_mbps: Vec<f64>,
    /// MONtra weight per flow index.
    pub weight: Vec<f64>,
}

impl WorkerPlan {
    /// The empty plan of epoch 0 for `shape`.
    pub fn empty(shape: &PlanShape) -> Self {
        let classes = usize::try_from(shape.classes).unwrap_or(0);
        Self {
            epoch: 0,
            sessions: vec![0; classes],
            rate_mbps: vec![0.0; shape.flows()],
            weight: vec![0.0; shape.flows()],
        }
    }

    /// Zeroes every entry and sets the epoch (no allocation).
    pub fn clear(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.sessions.fill(0);
        self.rate_mbps.fill(0.0);
        self.weight.fill(0.0);
    }

    /// Back to the configuration's terms (entries with zero sessions, or zero
    /// rate and weight, are left out).
    pub fn to_plan(&self, cfg: &Config) -> Plan {
        Plan {
            epoch: self.epoch,
            classes: cfg
                .classes
                .iter()
                .zip(&self.sessions)
                .filter(|(_, s)| **s > 0)
                .map(|(c, s)| ClassPlan {
                    id: c.id.clone(),
                    sessions: *s,
                })
                .collect(),
            flows: cfg
                .flows
                .iter()
                .zip(self.rate_mbps.iter().zip(&self.weight))
                .filter(|(_, (r, w))| **r != 0.0 || **w != 0.0)
                .map(|(f, (r, w))| FlowPlan {
                    id: f.id.clone(),
                    rate_mbps: *r,
                    weight: *w,
                })
                .collect(),
        }
    }
}
