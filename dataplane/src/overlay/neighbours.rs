//! LAN hosts learned from their traffic: which MAC uses which LAN address,
//! so that packets from other sites are delivered to it. Pure (time passed
//! in), fixed size, no allocation after [`NeighbourTable::new`].
//!
//! A set-associative table ([`NEIGHBOUR_SETS`] sets of [`NEIGHBOUR_WAYS`]
//! entries) indexed by a hash of the address keyed with a seed chosen at
//! random at start, so that LAN hosts cannot pick addresses that collide.
//! An address learned with one MAC is not taken over by another MAC until
//! the first has been silent for the hold time: a LAN host cannot steal
//! another's replies by sending from its address ([`Learn::Conflict`]); a
//! host that really changed its MAC (new NIC, VM moved) is followed after
//! the hold time. A full set evicts only an entry silent for the hold time.

use core::net::IpAddr;

use crate::wire::ethernet::MacAddr;

/// Ways per set.
pub const NEIGHBOUR_WAYS: usize = 4;
/// Sets.
pub const NEIGHBOUR_SETS: usize = 256;

/// What [`NeighbourTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    /// The address was known with this MAC (refreshed).
    Known,
    /// A new address was learned.
    Learned,
    /// The address moved to this MAC: the previous one had been silent for
    /// the hold time.
    Moved,
    /// Another MAC holds the address and was heard within the hold time:
    /// not learned (the packet should be dropped).
    Conflict,
    /// Every entry of the address's set is in use: not learned.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ip: IpAddr,
    mac: MacAddr,
    last_ns: u64,
}

/// Counters of a [`NeighbourTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighbourStats {
    /// Addresses learned.
    pub learned: u64,
    /// Addresses that moved to a new MAC after the hold time.
    pub moved: u64,
    /// Claims of a learned address by another MAC within the hold time.
    pub conflicts: u64,
    /// Addresses not learned: their set was full of live entries.
    pub full: u64,
}

/// The learned neighbour table. See the module documentation.
#[derive(Debug)]
pub struct NeighbourTable {
    entries: Box<[Option<Entry>]>,
    seed: u64,
    hold_ns: u64,
    stats: NeighbourStats,
}

impl NeighbourTable {
    /// An empty table: hash seed `seed` (random per process in service),
    /// hold time `hold_ns`.
    pub fn new(seed: u64, hold_ns: u64) -> Self {
        Self {
            entries: vec![None; NEIGHBOUR_SETS * NEIGHBOUR_WAYS].into_boxed_slice(),
            seed,
            hold_ns,
            stats: NeighbourStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &NeighbourStats {
        &self.stats
    }

    #[inline]
    fn set(&self, ip: IpAddr) -> usize {
        let h = match ip {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                u64::try_from(b & u128::from(u64::MAX)).unwrap_or(0)
                    ^ u64::try_from(b >> 64).unwrap_or(0).rotate_left(29)
            }
        };
        let m = u128::from(h ^ self.seed) * u128::from(self.seed | 1);
        let x = u64::try_from(m & u128::from(u64::MAX)).unwrap_or(0)
            ^ u64::try_from(m >> 64).unwrap_or(0);
        let s = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
        usize::try_from(s).unwrap_or(0) % NEIGHBOUR_SETS
    }

    #[inline]
    fn ways(&mut self, ip: IpAddr) -> &mut [Option<Entry>] {
        let s = self.set(ip) * NEIGHBOUR_WAYS;
        &mut self.entries[s..s + NEIGHBOUR_WAYS]
    }

    /// Records that `mac` sent from LAN address `ip` at `now_ns`.
    #[inline]
    pub fn learn(&mut self, ip: IpAddr, mac: MacAddr, now_ns: u64) -> Learn {
        let hold = self.hold_ns;
        let ways = self.ways(ip);
        if let Some(e) = ways.iter_mut().flatten().find(|e| e.ip == ip) {
            if e.mac == mac {
                e.last_ns = now_ns;
                return Learn::Known;
            }
            if now_ns.saturating_sub(e.last_ns) > hold {
                e.mac = mac;
                e.last_ns = now_ns;
                self.stats.moved += 1;
                return Learn::Moved;
            }
            self.stats.conflicts += 1;
            return Learn::Conflict;
        }
        let new = Some(Entry {
            ip,
            mac,
            last_ns: now_ns,
        });
        if let Some(w) = ways.iter_mut().find(|w| w.is_none()) {
            *w = new;
            self.stats.learned += 1;
            return Learn::Learned;
        }
        // The least recently heard entry, if it has been silent long enough.
        let oldest = ways
            .iter_mut()
            .min_by_key(|w| w.map_or(0, |e| e.last_ns))
            .filter(|w| w.is_some_and(|e| now_ns.saturating_sub(e.last_ns) > hold));
        match oldest {
            Some(w) => {
                *w = new;
                self.stats.learned += 1;
                Learn::Learned
            }
            None => {
                self.stats.full += 1;
                Learn::Full
            }
        }
    }

    /// Records what another worker of the gateway learned: `ip` is at
    /// `mac` (that worker saw the host's packet, and held the address for
    /// it). Replaces this table's MAC for `ip` whatever its age, or takes
    /// a free or silent way; a full set keeps what it has.
    pub fn learn_from_worker(&mut self, ip: IpAddr, mac: MacAddr, now_ns: u64) {
        if let Some(e) = self.ways(ip).iter_mut().flatten().find(|e| e.ip == ip) {
            e.mac = mac;
            e.last_ns = now_ns;
            return;
        }
        let _ = self.learn(ip, mac, now_ns);
    }

    /// The MAC learned for `ip`, if any.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<MacAddr> {
        let s = self.set(ip) * NEIGHBOUR_WAYS;
        self.entries[s..s + NEIGHBOUR_WAYS]
            .iter()
            .flatten()
            .find(|e| e.ip == ip)
            .map(|e| e.mac)
    }

    /// Every learned `(address, MAC)`.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        self.entries.iter().flatten().map(|e| (e.ip, e.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const HOLD: u64 = 30_000_000_000;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xC612_0A00 + i))
    }
    fn mac(i: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, i])
    }

    #[test]
    fn a_learned_address_is_not_taken_over_within_the_hold_time() {
        let mut t = NeighbourTable::new(7, HOLD);
        assert_eq!(t.learn(ip(5), mac(1), 0), Learn::Learned);
        assert_eq!(t.learn(ip(5), mac(1), 1_000), Learn::Known);
        // Another host claims the address: refused while the owner talks.
        assert_eq!(t.learn(ip(5), mac(2), 2_000), Learn::Conflict);
        assert_eq!(t.learn(ip(5), mac(2), HOLD), Learn::Conflict);
        assert_eq!(t.lookup(ip(5)), Some(mac(1)));
        // The owner keeps talking: still refused much later.
        assert_eq!(t.learn(ip(5), mac(1), 2 * HOLD), Learn::Known);
        assert_eq!(t.learn(ip(5), mac(2), 2 * HOLD + HOLD / 2), Learn::Conflict);
        // The owner falls silent for the hold time: the new MAC is followed.
        assert_eq!(t.learn(ip(5), mac(2), 3 * HOLD + 1), Learn::Moved);
        assert_eq!(t.lookup(ip(5)), Some(mac(2)));
        assert_eq!(t.learn(ip(5), mac(1), 3 * HOLD + 2), Learn::Conflict);
        let s = t.stats();
        assert_eq!((s.learned, s.moved, s.conflicts), (1, 1, 4));
    }

    #[test]
    fn full_sets_evict_only_silent_entries() {
        let mut t = NeighbourTable::new(9, HOLD);
        // Addresses of one set.
        let set = t.set(ip(0));
        let same: Vec<IpAddr> = (1..100_000)
            .map(ip)
            .filter(|a| t.set(*a) == set)
            .take(NEIGHBOUR_WAYS + 1)
            .collect();
        assert_eq!(same.len(), NEIGHBOUR_WAYS + 1);
        for (i, a) in same[..NEIGHBOUR_WAYS].iter().enumerate() {
            assert_eq!(
                t.learn(*a, mac(u8::try_from(i).unwrap()), 10),
                Learn::Learned
            );
        }
        let last = same[NEIGHBOUR_WAYS];
        assert_eq!(t.learn(last, mac(9), 20), Learn::Full);
        assert_eq!(t.lookup(last), None);
        // Keep all but the first alive; after the hold time it gives way.
        for (i, a) in same.iter().enumerate().take(NEIGHBOUR_WAYS).skip(1) {
            assert_eq!(
                t.learn(*a, mac(u8::try_from(i).unwrap()), HOLD),
                Learn::Known
            );
        }
        assert_eq!(t.learn(last, mac(9), HOLD + 11), Learn::Learned);
        assert_eq!(t.lookup(last), Some(mac(9)));
        assert_eq!(t.lookup(same[0]), None);
        assert_eq!(t.stats().full, 1);
    }

    #[test]
    fn the_seed_changes_the_sets() {
        let a = NeighbourTable::new(1, HOLD);
        let b = NeighbourTable::new(2, HOLD);
        let differ = (0..256).filter(|&i| a.set(ip(i)) != b.set(ip(i))).count();
        assert!(differ > 200, "{differ}");
        let v6 = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert!(a.set(v6) < NEIGHBOUR_SETS);
    }
}
