//! Admitted sessions per (LAN host, class), for the per-host cap
//! (`max_sessions_per_host`): open addressing with linear probing, sized
//! once (as the session table: at most one entry per admitted session),
//! backward-shift deletion, the session table's seeded hash. An entry lives
//! while its count is above zero. Empty (no memory) when no class has a cap.

use super::inner::FiveTuple;
use super::sessions::{hash, next_slot, slot_of};

const OCCUPIED: u8 = 1;
const V6: u8 = 2;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    src: u128,
    class: u16,
    state: u8,
    count: u32,
}

/// A LAN host: inner source address and family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// Address (IPv4 in the low 32 bits).
    pub src: u128,
    /// IPv6.
    pub v6: bool,
}

impl Host {
    /// The sender of a 5-tuple.
    pub fn of(t: &FiveTuple) -> Self {
        Self {
            src: t.src,
            v6: t.v6,
        }
    }
}

/// Admitted-session counts per (host, class).
#[derive(Debug)]
pub struct HostTable {
    slots: Vec<Slot>,
    len: usize,
    capacity: usize,
    seed: u64,
}

impl HostTable {
    /// A table for up to `capacity` (host, class) pairs (0: disabled, no
    /// memory), hash seed `seed`.
    pub fn new(capacity: usize, seed: u64) -> Self {
        let n = if capacity == 0 {
            0
        } else {
            capacity + capacity / 3 + 1
        };
        Self {
            slots: vec![Slot::default(); n],
            len: 0,
            capacity,
            seed,
        }
    }

    /// Pairs stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn state(h: Host) -> u8 {
        OCCUPIED | if h.v6 { V6 } else { 0 }
    }

    #[inline]
    fn home(&self, h: Host, class: u16) -> usize {
        let t = FiveTuple {
            src: h.src,
            dst: 0,
            sport: class,
            dport: 0,
            proto: 0,
            v6: h.v6,
        };
        slot_of(hash(&t, self.seed), self.slots.len())
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        next_slot(i, self.slots.len())
    }

    /// `Ok(slot)` holding the pair, or `Err(vacant slot)`; `None` when
    /// disabled. Terminates: at least a quarter of the slots are empty.
    #[inline]
    fn find(&self, h: Host, class: u16) -> Option<Result<usize, usize>> {
        if self.slots.is_empty() {
            return None;
        }
        let st = Self::state(h);
        let mut i = self.home(h, class);
        loop {
            let s = &self.slots[i];
            if s.state == 0 {
                return Some(Err(i));
            }
            if s.state == st && s.src == h.src && s.class == class {
                return Some(Ok(i));
            }
            i = self.next(i);
        }
    }

    /// Sessions of `class` admitted for host `h`.
    #[inline]
    pub fn count(&self, h: Host, class: u16) -> u32 {
        match self.find(h, class) {
            Some(Ok(i)) => self.slots[i].count,
            _ => 0,
        }
    }

    /// Counts one more admitted session; false (nothing counted) when the
    /// table is disabled or full.
    #[inline]
    pub fn add(&mut self, h: Host, class: u16) -> bool {
        match self.find(h, class) {
            Some(Ok(i)) => {
                let c = &mut self.slots[i].count;
                *c = c.saturating_add(1);
                true
            }
            Some(Err(i)) if self.len < self.capacity => {
                self.slots[i] = Slot {
                    src: h.src,
                    class,
                    state: Self::state(h),
                    count: 1,
                };
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Counts one admitted session less (the pair goes at zero).
    #[inline]
    pub fn remove(&mut self, h: Host, class: u16) {
        let Some(Ok(i)) = self.find(h, class) else {
            return;
        };
        let c = &mut self.slots[i].count;
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.delete(i);
        }
    }

    /// Removes slot `i`, shifting later members of its probe run back.
    fn delete(&mut self, i: usize) {
        let n = self.slots.len();
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            let s = self.slots[j];
            if s.state == 0 || j == i {
                break;
            }
            let h = Host {
                src: s.src,
                v6: s.state & V6 != 0,
            };
            let home = self.home(h, s.class);
            // The entry at j may fill the hole if the hole lies on its probe path [home, j].
            if (j + n - home) % n >= (j + n - hole) % n {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn host(i: u32) -> Host {
        Host {
            src: u128::from(i),
            v6: i.is_multiple_of(7),
        }
    }

    #[test]
    fn counts_match_a_map_through_adds_and_removes() {
        // A small table: long probe runs, wrap-around, backward shifts.
        let mut t = HostTable::new(40, 5);
        let mut model: HashMap<(u32, u16), u32> = HashMap::new();
        let mut rng = crate::sys::rng::Rng::new(3);
        for _ in 0..20_000 {
            let h = u32::try_from(rng.below(30)).unwrap();
            let c = u16::try_from(rng.below(2)).unwrap();
            let live = model.values().filter(|v| **v > 0).count();
            if rng.chance(0.5) {
                let fits = model.get(&(h, c)).is_some_and(|v| *v > 0) || live < 40;
                assert_eq!(t.add(host(h), c), fits);
                if fits {
                    *model.entry((h, c)).or_default() += 1;
                }
            } else {
                t.remove(host(h), c);
                if let Some(v) = model.get_mut(&(h, c)) {
                    *v = v.saturating_sub(1);
                }
            }
            for ((h, c), v) in &model {
                assert_eq!(t.count(host(*h), *c), *v);
            }
            assert_eq!(t.len(), model.values().filter(|v| **v > 0).count());
        }
    }

    #[test]
    fn disabled_table_counts_nothing() {
        let mut t = HostTable::new(0, 1);
        assert!(!t.add(host(1), 0));
        assert_eq!(t.count(host(1), 0), 0);
        t.remove(host(1), 0);
        assert!(t.is_empty());
    }
}
