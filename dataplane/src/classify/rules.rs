//! Rule matching: inner 5-tuple + DSCP -> class, first matching rule wins.
//!
//! Structure (per address family): the destination address space is cut at
//! every rule prefix boundary into elementary intervals (at most `2P + 1` for
//! `P` distinct prefixes); each interval holds the list of rule entries whose
//! prefix covers it, in priority (file) order. A lookup is one binary search
//! over the interval starts (`log2(2P+1)` probes, 15 for 10k prefixes) and a
//! linear scan of that interval's list until the first entry whose protocol,
//! ports and DSCP match.
//!
//! A list stops growing at its first *catch-all* entry (no protocol, port or
//! DSCP constraint): later entries could never win there. Worst case: many
//! constrained rules on the same or nested prefixes (e.g. 10k port rules all
//! on `0.0.0.0/0`) make one list as long as the rule set, and a packet
//! matching none of them scans it all; memory is the sum of the list lengths,
//! bounded at build time by [`MAX_CANDIDATES`].

use super::inner::Inner;
use crate::config::{Config, Prefix, Rule};

/// Upper bound on the total length of all interval lists (4 bytes each).
pub const MAX_CANDIDATES: usize = 1 << 24;

/// One (rule, destination prefix) pair, compact for the scan.
#[derive(Clone, Copy, Debug)]
struct Entry {
    dscp: u64,
    sport_lo: u16,
    sport_hi: u16,
    dport_lo: u16,
    dport_hi: u16,
    class: u16,
    proto: u8,
    any_proto: bool,
}

impl Entry {
    fn from_rule(r: &Rule, class: u16) -> Self {
        let (sport_lo, sport_hi) = r.src_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi));
        let (dport_lo, dport_hi) = r.dst_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi));
        let dscp = if r.dscp.is_empty() {
            u64::MAX
        } else {
            r.dscp.iter().fold(0, |m, d| m | 1u64 << (d & 63))
        };
        Self {
            dscp,
            sport_lo,
            sport_hi,
            dport_lo,
            dport_hi,
            class,
            proto: r.protocol.unwrap_or(0),
            any_proto: r.protocol.is_none(),
        }
    }
    fn is_catch_all(&self) -> bool {
        self.any_proto
            && self.dscp == u64::MAX
            && (self.sport_lo, self.sport_hi, self.dport_lo, self.dport_hi)
                == (0, u16::MAX, 0, u16::MAX)
    }
    #[inline]
    fn matches(&self, i: &Inner) -> bool {
        let t = &i.tuple;
        (self.any_proto || self.proto == t.proto)
            && self.dscp & (1u64 << (i.dscp & 63)) != 0
            && self.sport_lo <= t.sport
            && t.sport <= self.sport_hi
            && self.dport_lo <= t.dport
            && t.dport <= self.dport_hi
    }
}

/// Sorted interval table over one family's address space.
#[derive(Debug, Default)]
struct RangeTable<K> {
    /// Interval starts, ascending, `starts[0] == 0`.
    starts: Vec<K>,
    /// `offsets[i]..offsets[i + 1]` indexes `cands` for interval `i`.
    offsets: Vec<u32>,
    /// Entry indices, priority order within an interval.
    cands: Vec<u32>,
}

impl<K: Copy + Ord + Default> RangeTable<K> {
    fn build(
        ranges: &[(K, K, u32)],
        entries: &[Entry],
        next: impl Fn(K) -> Option<K>,
    ) -> Result<Self, RuleError> {
        let mut starts = vec![K::default()];
        for &(lo, hi, _) in ranges {
            starts.push(lo);
            if let Some(n) = next(hi) {
                starts.push(n);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); starts.len()];
        let mut closed = vec![false; starts.len()];
        let mut total = 0usize;
        // `ranges` is in priority order.
        for &(lo, hi, e) in ranges {
            let first = starts.partition_point(|s| *s < lo);
            let end = starts.partition_point(|s| *s <= hi);
            let catch_all = entries[e as usize].is_catch_all();
            for i in first..end {
                if !closed[i] {
                    lists[i].push(e);
                    closed[i] = catch_all;
                    total += 1;
                }
            }
            if total > MAX_CANDIDATES {
                return Err(RuleError::TooManyCandidates);
            }
        }
        let mut offsets = Vec::with_capacity(starts.len() + 1);
        let mut cands = Vec::with_capacity(total);
        offsets.push(0);
        for l in &lists {
            cands.extend_from_slice(l);
            offsets.push(u32::try_from(cands.len()).map_err(|_| RuleError::TooManyCandidates)?);
        }
        Ok(Self {
            starts,
            offsets,
            cands,
        })
    }

    #[inline]
    fn candidates(&self, addr: K) -> &[u32] {
        let i = self
            .starts
            .partition_point(|s| *s <= addr)
            .saturating_sub(1);
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.cands.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Why a rule table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// More than 65535 classes.
    #[error("too many classes (at most 65535)")]
    TooManyClasses,
    /// The interval lists would exceed [`MAX_CANDIDATES`].
    #[error("rule set too large for the interval table (more than {MAX_CANDIDATES} candidates)")]
    TooManyCandidates,
}

/// The rules of the classes leaving this site, compiled for lookup.
#[derive(Debug, Default)]
pub struct RuleTable {
    entries: Vec<Entry>,
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
}

impl RuleTable {
    /// Compiles the rules of every class whose source is this site. A rule
    /// without destination prefixes uses the destination site's prefixes.
    pub fn build(cfg: &Config) -> Result<Self, RuleError> {
        let mut entries = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (ci, c) in cfg.classes.iter().enumerate() {
            if c.source != cfg.site.name {
                continue;
            }
            let class = u16::try_from(ci)
                .ok()
                .filter(|c| *c < u16::MAX)
                .ok_or(RuleError::TooManyClasses)?;
            let site_prefixes = cfg.site_prefixes(&c.destination).unwrap_or(&[]);
            for r in &c.rules {
                let prefixes: &[Prefix] = if r.dst_prefixes.is_empty() {
                    site_prefixes
                } else {
                    &r.dst_prefixes
                };
                for p in prefixes {
                    let e =
                        u32::try_from(entries.len()).map_err(|_| RuleError::TooManyCandidates)?;
                    entries.push(Entry::from_rule(r, class));
                    if let Some((lo, hi)) = p.range_v4() {
                        v4.push((lo, hi, e));
                    } else if let Some((lo, hi)) = p.range_v6() {
                        v6.push((lo, hi, e));
                    }
                }
            }
        }
        let v4 = RangeTable::build(&v4, &entries, |k: u32| k.checked_add(1))?;
        let v6 = RangeTable::build(&v6, &entries, |k: u128| k.checked_add(1))?;
        Ok(Self { entries, v4, v6 })
    }

    /// The class (index into `Config::classes`) of the first matching rule.
    #[inline]
    pub fn lookup(&self, i: &Inner) -> Option<u16> {
        let cands = if i.tuple.v6 {
            self.v6.candidates(i.tuple.dst)
        } else {
            // IPv4 addresses live in the low 32 bits.
            self.v4
                .candidates(u32::try_from(i.tuple.dst).unwrap_or(u32::MAX))
        };
        cands
            .iter()
            .filter_map(|&e| self.entries.get(e as usize))
            .find(|e| e.matches(i))
            .map(|e| e.class)
    }

    /// Number of compiled (rule, prefix) entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when no class leaves this site.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Longest interval list (the worst-case linear scan).
    pub fn max_candidates(&self) -> usize {
        let w4 = self
            .v4
            .offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        let w6 = self
            .v6
            .offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        w4.max(w6)
    }
}
