//! LAN hosts learned from their traffic: which MAC uses which LAN address,
//! so that packets from other sites are delivered to it. Pure (time passed
//! in), fixed size, no allocation after [`NeighbourTable::new`].
//!
//! A set-associative table ([`NEIGHBOUR_SETS`] sets of [`NEIGHBOUR_WAYS`]
//! entries) indexed by a hash of the address keyed with a seed chosen at
//! random at start, so that LAN hosts cannot pick addresses that collide.
//! Each address has two candidate sets (two choices: a new one goes to the
//! emptier), so that sets do not overflow long before the table is full:
//! with one choice a set of 4 ways overflowed with about 300 hosts in 1 024
//! entries; with two, [`NEIGHBOUR_HOSTS`] hosts (half the entries) are all
//! held (test `half_the_entries_are_all_learned`).
//! An address learned with one MAC is not taken over by another MAC until
//! the first has been silent for the hold time: a LAN host cannot steal
//! another's replies by sending from its address ([`Learn::Conflict`]); a
//! host that really changed its MAC (new NIC, VM moved) is followed after
//! the hold time. A full set evicts only an entry silent for the hold time.

use core::net::IpAddr;

use crate::wire::ethernet::MacAddr;

/// Ways per set.
pub const NEIGHBOUR_WAYS: usize = 4;
/// Sets (a power of two).
pub const NEIGHBOUR_SETS: usize = 2048;
/// LAN hosts the table is sized for (half its entries); beyond that an
/// address may find both its sets full of live entries
/// ([`NeighbourStats::full`]), and its packets go to the LAN next hop.
pub const NEIGHBOUR_HOSTS: usize = NEIGHBOUR_SETS * NEIGHBOUR_WAYS / 2;

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

/// An address as compared in the table: its bits and its family (two
/// 64-bit compares and a flag, not the enum's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addr {
    hi: u64,
    lo: u64,
    v6: bool,
}

impl Addr {
    #[inline]
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self {
                hi: 0,
                lo: u64::from(a.to_bits()),
                v6: false,
            },
            IpAddr::V6(a) => {
                let b = a.to_bits();
                Self {
                    hi: u64::try_from(b >> 64).unwrap_or(0),
                    lo: u64::try_from(b & u128::from(u64::MAX)).unwrap_or(0),
                    v6: true,
                }
            }
        }
    }

    fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(core::net::Ipv6Addr::from_bits(
                (u128::from(self.hi) << 64) | u128::from(self.lo),
            ))
        } else {
            // An IPv4 address's bits: below 2^32.
            IpAddr::V4(core::net::Ipv4Addr::from_bits(
                u32::try_from(self.lo).unwrap_or(0),
            ))
        }
    }
}

/// One learned address, its fields flat so that it takes 32 bytes (two
/// entries a line; an [`Addr`] inside would pad it to 40).
#[derive(Clone, Copy, Debug)]
struct Entry {
    hi: u64,
    lo: u64,
    last_ns: u64,
    mac: MacAddr,
    v6: bool,
}

impl Entry {
    #[inline]
    fn new(ip: Addr, mac: MacAddr, last_ns: u64) -> Self {
        Self {
            hi: ip.hi,
            lo: ip.lo,
            last_ns,
            mac,
            v6: ip.v6,
        }
    }

    #[inline]
    fn is(&self, ip: Addr) -> bool {
        self.lo == ip.lo && self.hi == ip.hi && self.v6 == ip.v6
    }

    fn addr(&self) -> Addr {
        Addr {
            hi: self.hi,
            lo: self.lo,
            v6: self.v6,
        }
    }
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
    /// Sets - 1 (a power of two minus one).
    mask: usize,
    /// Entries in use.
    held: usize,
    seed: u64,
    hold_ns: u64,
    stats: NeighbourStats,
}

impl NeighbourTable {
    /// An empty table: hash seed `seed` (random per process in service),
    /// hold time `hold_ns`.
    pub fn new(seed: u64, hold_ns: u64) -> Self {
        Self::with_sets(NEIGHBOUR_SETS, seed, hold_ns)
    }

    /// A table of `sets` sets (rounded up to a power of two).
    pub fn with_sets(sets: usize, seed: u64, hold_ns: u64) -> Self {
        let sets = sets.max(1).next_power_of_two();
        Self {
            entries: vec![None; sets * NEIGHBOUR_WAYS].into_boxed_slice(),
            mask: sets - 1,
            held: 0,
            seed,
            hold_ns,
            stats: NeighbourStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &NeighbourStats {
        &self.stats
    }

    /// Addresses held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// No address held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The address's two candidate sets (may be the same).
    #[inline]
    fn sets(&self, ip: Addr) -> [usize; 2] {
        let h = if ip.v6 {
            ip.lo ^ ip.hi.rotate_left(29)
        } else {
            ip.lo
        };
        let m = u128::from(h ^ self.seed) * u128::from(self.seed | 1);
        let x = u64::try_from(m & u128::from(u64::MAX)).unwrap_or(0)
            ^ u64::try_from(m >> 64).unwrap_or(0);
        let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Two independent slices of the mixed hash: the top bits, then the
        // bits below them.
        let a = usize::try_from(x >> 40).unwrap_or(0) & self.mask;
        let b = usize::try_from((x >> 16) & 0xFF_FFFF).unwrap_or(0) & self.mask;
        [a, b]
    }

    #[inline]
    fn ways_of(&self, set: usize) -> &[Option<Entry>] {
        let s = set * NEIGHBOUR_WAYS;
        &self.entries[s..s + NEIGHBOUR_WAYS]
    }

    #[inline]
    fn ways_mut(&mut self, set: usize) -> &mut [Option<Entry>] {
        let s = set * NEIGHBOUR_WAYS;
        &mut self.entries[s..s + NEIGHBOUR_WAYS]
    }

    /// Where `ip` is held: its entry's index.
    #[inline]
    fn find(&self, ip: Addr) -> Option<usize> {
        self.sets(ip).into_iter().find_map(|set| {
            self.ways_of(set)
                .iter()
                .position(|w| w.is_some_and(|e| e.is(ip)))
                .map(|k| set * NEIGHBOUR_WAYS + k)
        })
    }

    /// Records that `mac` sent from LAN address `ip` at `now_ns`.
    #[inline]
    pub fn learn(&mut self, ip: IpAddr, mac: MacAddr, now_ns: u64) -> Learn {
        let ip = Addr::of(ip);
        let hold = self.hold_ns;
        if let Some(i) = self.find(ip) {
            let Some(e) = self.entries.get_mut(i).and_then(Option::as_mut) else {
                return Learn::Full;
            };
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
        let new = Some(Entry::new(ip, mac, now_ns));
        // The emptier of the two sets (the first on a tie).
        let [a, b] = self.sets(ip);
        let free = |t: &Self, set: usize| t.ways_of(set).iter().filter(|w| w.is_none()).count();
        let set = if free(self, b) > free(self, a) { b } else { a };
        if let Some(w) = self.ways_mut(set).iter_mut().find(|w| w.is_none()) {
            *w = new;
            self.held += 1;
            self.stats.learned += 1;
            return Learn::Learned;
        }
        // Both full: the least recently heard entry of either, if it has
        // been silent long enough.
        let oldest = [a, b]
            .into_iter()
            .flat_map(|set| (0..NEIGHBOUR_WAYS).map(move |k| set * NEIGHBOUR_WAYS + k))
            .min_by_key(|&i| self.entries[i].map_or(0, |e| e.last_ns))
            .filter(|&i| self.entries[i].is_some_and(|e| now_ns.saturating_sub(e.last_ns) > hold));
        match oldest {
            Some(i) => {
                self.entries[i] = new;
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
        if let Some(e) = self
            .find(Addr::of(ip))
            .and_then(|i| self.entries.get_mut(i))
            .and_then(Option::as_mut)
        {
            e.mac = mac;
            e.last_ns = now_ns;
            return;
        }
        let _ = self.learn(ip, mac, now_ns);
    }

    /// The MAC learned for `ip`, if any.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<MacAddr> {
        let ip = Addr::of(ip);
        let [a, b] = self.sets(ip);
        let hit = |set| {
            for e in self.ways_of(set).iter().flatten() {
                if e.is(ip) {
                    return Some(e.mac);
                }
            }
            None
        };
        hit(a).or_else(|| hit(b))
    }

    /// Every learned `(address, MAC)`.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        self.entries
            .iter()
            .flatten()
            .map(|e| (e.addr().ip(), e.mac))
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
        // One set: every address's two choices.
        let mut t = NeighbourTable::with_sets(1, 9, HOLD);
        let same: Vec<IpAddr> = (1..=NEIGHBOUR_WAYS + 1)
            .map(|i| ip(u32::try_from(i).unwrap()))
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
        assert_eq!(t.len(), NEIGHBOUR_WAYS);
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

    /// Two entries a cache line: a set of 4 ways is two lines.
    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(core::mem::size_of::<Option<Entry>>(), 32);
        let a = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6));
        let b = ip(7);
        for x in [a, b] {
            assert_eq!(Addr::of(x).ip(), x);
        }
        // An IPv4 address and the IPv6 address of the same bits differ.
        let v6_same_bits = IpAddr::V6(core::net::Ipv6Addr::from_bits(0xC612_0A07));
        assert_ne!(Addr::of(b), Addr::of(v6_same_bits));
    }

    #[test]
    fn the_seed_changes_the_sets() {
        let a = NeighbourTable::new(1, HOLD);
        let b = NeighbourTable::new(2, HOLD);
        let differ = (0..256)
            .filter(|&i| a.sets(Addr::of(ip(i))) != b.sets(Addr::of(ip(i))))
            .count();
        assert!(differ > 250, "{differ}");
        // The two choices of an address are mostly two sets.
        let two = (0..256)
            .filter(|&i| a.sets(Addr::of(ip(i)))[0] != a.sets(Addr::of(ip(i)))[1])
            .count();
        assert!(two > 250, "{two}");
        let v6 = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert!(a.sets(Addr::of(v6)).iter().all(|&s| s < NEIGHBOUR_SETS));
    }

    /// A LAN of [`NEIGHBOUR_HOSTS`] hosts (consecutive addresses, as a
    /// LAN's are, or scattered ones), every one learned and found, for
    /// several seeds; one choice of set per address (the table before)
    /// lost hosts to full sets long before that.
    #[test]
    fn half_the_entries_are_all_learned() {
        // Scattered: random interface ids in 2001:db8::/64.
        let v6 = |i: u32| {
            let mut r = crate::sys::rng::SplitMix64::new(u64::from(i));
            IpAddr::V6(core::net::Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000_u128 | u128::from(r.next_u64()),
            ))
        };
        let n = u32::try_from(NEIGHBOUR_HOSTS).unwrap();
        for seed in [1, 0xDEAD_BEEF, 0x6E65_6967_6862_6F72] {
            for addr in [ip as fn(u32) -> IpAddr, v6] {
                let mut t = NeighbourTable::new(seed, HOLD);
                for i in 0..n {
                    let m = mac(u8::try_from(i % 251).unwrap());
                    assert_eq!(t.learn(addr(i), m, 1), Learn::Learned, "host {i} of {n}");
                }
                for i in 0..n {
                    assert_eq!(t.lookup(addr(i)), Some(mac(u8::try_from(i % 251).unwrap())));
                    assert_eq!(
                        t.learn(addr(i), mac(u8::try_from(i % 251).unwrap()), 2),
                        Learn::Known
                    );
                }
                assert_eq!(t.stats().full, 0);
                assert_eq!(t.iter().count(), NEIGHBOUR_HOSTS);
                assert_eq!(t.len(), NEIGHBOUR_HOSTS);
            }
        }
        // The scattered LAN with one choice per address: sets overflow.
        let mut one = NeighbourTable::new(1, HOLD);
        let full = (0..n)
            .filter(|&i| {
                let [a, _] = one.sets(Addr::of(v6(i)));
                let s = one.ways_mut(a);
                match s.iter_mut().find(|w| w.is_none()) {
                    Some(w) => {
                        *w = Some(Entry::new(Addr::of(v6(i)), mac(1), 1));
                        false
                    }
                    None => true,
                }
            })
            .count();
        assert!(full > 0, "one choice held every host");
    }
}
