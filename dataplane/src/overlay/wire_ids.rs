//! Wire flow id -> flow index: an open-addressing hash table (linear
//! probing, load at most 1/2, built once per gateway), so that the flow of
//! an arriving packet or ack entry costs one probe of one cache line. A
//! binary search over a sorted array cost ~20 dependent probes at a million
//! flows, most of them cache misses (11 % of the pipeline benchmark's time).
//!
//! Wire ids are already hashes of the flows' names ([`super::wire_flow_id`]);
//! the home slot is their Fibonacci hash (the top bits of `id * 2^32/phi`),
//! so that ids that differ only in their low bits still spread out.

use crate::sys::prefetch_read;

/// One slot: a wire id and its flow index ([`EMPTY`]: free).
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u32,
    flow: u32,
}

/// `Entry::flow` of a free slot (flow indices stay below
/// `classify::MAX_FLOWS`).
const EMPTY: u32 = u32::MAX;

/// The table. See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct WireIds {
    slots: Vec<Entry>,
    /// `32 - log2(slots.len())`: the home slot is the hash's top bits.
    shift: u32,
}

impl WireIds {
    /// A table of `(wire id, flow index)` pairs whose ids are distinct
    /// (the caller checks: a duplicate id would shadow the later pair) and
    /// whose flow indices are below `u32::MAX`.
    pub(crate) fn build(pairs: &[(u32, u32)]) -> Self {
        let cap = pairs.len().saturating_mul(2).max(16).next_power_of_two();
        let bits = cap.trailing_zeros().min(32);
        let mut t = Self {
            slots: vec![Entry { id: 0, flow: EMPTY }; cap],
            shift: 32 - bits,
        };
        for &(id, flow) in pairs {
            let mask = t.slots.len() - 1;
            let mut i = t.home(id);
            // Load <= 1/2: a free slot is always found.
            while t.slots[i].flow != EMPTY && t.slots[i].id != id {
                i = (i + 1) & mask;
            }
            t.slots[i] = Entry { id, flow };
        }
        t
    }

    #[inline]
    fn home(&self, id: u32) -> usize {
        // shift >= 7 (at most 2^25 slots), so the shifted value fits usize.
        let h = u64::from(id.wrapping_mul(0x9E37_79B9)) >> self.shift;
        usize::try_from(h).unwrap_or(0)
    }

    /// The flow index of wire id `id`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        // Bounded by the table's size (it always has a free slot).
        for _ in 0..self.slots.len() {
            let e = self.slots[i];
            if e.flow == EMPTY {
                return None;
            }
            if e.id == id {
                return Some(e.flow as usize);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Starts loading `id`'s home slot (a hint for batches).
    #[inline]
    pub(crate) fn prefetch(&self, id: u32) {
        if let Some(e) = self.slots.get(self.home(id)) {
            prefetch_read((e as *const Entry).cast::<u8>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn finds_every_pair_and_nothing_else() {
        let pairs: Vec<(u32, u32)> = (0..10_000u32)
            .map(|f| (super::super::wire_flow_id(&format!("f{f}")), f))
            .collect();
        let t = WireIds::build(&pairs);
        for &(id, f) in &pairs {
            assert_eq!(t.get(id), Some(f as usize));
        }
        let known: std::collections::HashSet<u32> = pairs.iter().map(|p| p.0).collect();
        let mut misses = 0;
        for id in (0..200_000u32).map(|x| x.wrapping_mul(2_654_435_761)) {
            if !known.contains(&id) {
                assert_eq!(t.get(id), None);
                misses += 1;
            }
        }
        assert!(misses > 190_000);
        assert_eq!(WireIds::build(&[]).get(7), None);
    }

    proptest! {
        /// Agrees with a map on any set of distinct ids and on any probe
        /// (at load 1/2 many ids share a home slot: runs of probes).
        #[test]
        fn matches_a_map(ids in proptest::collection::hash_set(any::<u32>(), 0..500),
                         probes in proptest::collection::vec(any::<u32>(), 0..200)) {
            let ids: Vec<u32> = ids.into_iter().collect();
            let pairs: Vec<(u32, u32)> = ids.iter().enumerate().map(|(i, &id)| (id, u32::try_from(i).unwrap())).collect();
            let t = WireIds::build(&pairs);
            let m: HashMap<u32, usize> = pairs.iter().map(|&(id, f)| (id, f as usize)).collect();
            for &(id, _) in &pairs {
                prop_assert_eq!(t.get(id), m.get(&id).copied());
            }
            for id in probes {
                prop_assert_eq!(t.get(id), m.get(&id).copied());
                t.prefetch(id);
            }
        }
    }
}
