//! The session keys of one worker, by slot: the control process installs
//! and revokes them ([`crate::shm::Command::InstallKey`] / `RevokeKey`); the
//! receiver index of a packet selects exactly one slot (`index &
//! SLOT_MASK`, the full index compared), so a packet costs at most one
//! AEAD open. Per peer, the *current* key seals what we send; a responder's
//! new key is *pending* until a packet authenticates with it (WireGuard's key
//! confirmation), then it becomes current. A replaced key keeps opening what
//! the peer still sends with it until it expires ([`REJECT_AFTER_TIME_NS`]
//! after its handshake) or its slot is reused.
//!
//! Pure: time comes in as `now` (ns, the monotonic clock both processes
//! share). Installing builds the `ring` keys and allocates (cold path);
//! sealing and opening do not.

use ring::aead::{LessSafeKey, UnboundKey};

use super::replay::{Replay, ReplayWindow};
use super::{
    KEY_SLOTS, LANE_MESSAGES, LANE_SHIFT, MAX_LANES, REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME_NS,
    split_counter,
};
use crate::shm::msg::{KeyInstall, KeyUsage};

/// Mask of the slot bits of a receiver index.
pub const SLOT_MASK: u32 = (1 << super::KEY_SLOT_BITS) - 1;

/// The slot of a receiver index.
#[inline]
pub const fn slot_of(index: u32) -> usize {
    // At most 10 bits: fits any usize.
    (index & SLOT_MASK) as usize
}

/// Why a key was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    /// The peer index is not a configured peer.
    UnknownPeer,
    /// `ring` refused the key material.
    BadKey,
}

/// Why no key could be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// No key (no session with that peer, or the index names none).
    NoKey,
    /// The key is older than [`REJECT_AFTER_TIME_NS`].
    Expired,
    /// The key sealed [`REJECT_AFTER_MESSAGES`] packets.
    Exhausted,
}

/// One installed key pair.
pub struct KeySlot {
    /// Peer index.
    pub peer: u32,
    /// Receiver index of packets to us under this key.
    pub local_index: u32,
    /// Receiver index we write into packets we seal.
    pub remote_index: u32,
    send: LessSafeKey,
    recv: LessSafeKey,
    /// Packets sealed in this worker's lane.
    send_counter: u64,
    /// This worker's lane, in place in the counter's top bits.
    lane_bits: u64,
    /// One replay window per sending lane (the peer's workers).
    replay: [ReplayWindow; MAX_LANES],
    /// When the handshake completed, ns.
    pub created_ns: u64,
    /// A packet authenticated with it (initiator keys: from the start).
    pub confirmed: bool,
    /// Packets opened with it.
    pub rx_packets: u64,
    /// When the last packet opened with it arrived (0 = never), ns.
    pub last_rx_ns: u64,
}

impl core::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeySlot")
            .field("peer", &self.peer)
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("send_counter", &self.send_counter)
            .field("created_ns", &self.created_ns)
            .field("confirmed", &self.confirmed)
            .field("rx_packets", &self.rx_packets)
            .finish_non_exhaustive()
    }
}

impl KeySlot {
    fn new(k: &KeyInstall, lane: u64) -> Result<Self, InstallError> {
        let key = |b: &[u8; 32]| {
            UnboundKey::new(super::AEAD_ALGORITHM, b)
                .map(LessSafeKey::new)
                .map_err(|_| InstallError::BadKey)
        };
        Ok(Self {
            peer: k.peer,
            local_index: k.local_index,
            remote_index: k.remote_index,
            send: key(&k.send_key)?,
            recv: key(&k.recv_key)?,
            send_counter: 0,
            lane_bits: lane << LANE_SHIFT,
            replay: core::array::from_fn(|_| ReplayWindow::new()),
            created_ns: k.created_ns,
            confirmed: k.initiator,
            rx_packets: 0,
            last_rx_ns: 0,
        })
    }

    /// Expired at `now`.
    #[inline]
    pub const fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.created_ns) >= REJECT_AFTER_TIME_NS
    }

    /// The next send counter, consumed (never handed out twice): this
    /// worker's lane in the top bits ([`super::LANE_SHIFT`]), then the
    /// packets it sealed. The one place counters are allocated.
    #[inline]
    pub fn next_counter(&mut self) -> Result<u64, KeyError> {
        if self.send_counter >= LANE_MESSAGES {
            return Err(KeyError::Exhausted);
        }
        let c = self.lane_bits | self.send_counter;
        self.send_counter += 1;
        Ok(c)
    }

    /// Whether `counter` may still be accepted: below the key's limit, in a
    /// lane, not seen before in its lane's window (the check before
    /// opening; [`KeyTable::accept`] records it after).
    #[inline]
    pub fn replay_check(&self, counter: u64) -> Result<(), Replay> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Replay::Limit);
        }
        let (lane, n) = split_counter(counter);
        self.replay.get(lane).ok_or(Replay::Limit)?.check(n)
    }

    /// Packets sealed so far.
    pub const fn sent(&self) -> u64 {
        self.send_counter
    }

    /// The sealing key.
    #[inline]
    pub const fn send_key(&self) -> &LessSafeKey {
        &self.send
    }

    /// The opening key.
    #[inline]
    pub const fn recv_key(&self) -> &LessSafeKey {
        &self.recv
    }

    /// The replay window of lane 0 (a one-worker peer's).
    #[inline]
    pub const fn replay(&self) -> &ReplayWindow {
        &self.replay[0]
    }
}

/// A peer's sending keys, by slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PeerKeys {
    current: Option<u16>,
    pending: Option<u16>,
}

/// What [`KeyTable::accept`] learned about the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The key's peer: the packet's authenticated sender.
    pub peer: u32,
    /// This packet confirmed a responder key: it is now the peer's current.
    pub confirmed_now: bool,
}

/// The keys of one worker.
#[derive(Debug)]
pub struct KeyTable {
    slots: Vec<Option<Box<KeySlot>>>,
    peers: Vec<PeerKeys>,
    installed: usize,
    /// This worker's counter lane.
    lane: u64,
}

impl KeyTable {
    /// An empty table for `npeers` peers.
    pub fn new(npeers: usize) -> Self {
        Self {
            slots: (0..KEY_SLOTS).map(|_| None).collect(),
            peers: vec![PeerKeys::default(); npeers],
            installed: 0,
            lane: 0,
        }
    }

    /// The table of worker `lane` (below [`MAX_LANES`]): the counters it
    /// hands out carry the lane in their top bits.
    pub fn with_lane(npeers: usize, lane: usize) -> Self {
        let mut t = Self::new(npeers);
        t.lane = u64::try_from(lane.min(MAX_LANES - 1)).unwrap_or(0);
        t
    }

    /// Keys installed.
    pub const fn len(&self) -> usize {
        self.installed
    }

    /// No key installed.
    pub const fn is_empty(&self) -> bool {
        self.installed == 0
    }

    /// Installs a key pair in its slot, replacing what the slot held. An
    /// initiator key becomes the peer's current sending key at once; a
    /// responder key is pending until [`KeyTable::accept`] confirms it.
    pub fn install(&mut self, k: &KeyInstall) -> Result<(), InstallError> {
        let peer = usize::try_from(k.peer).map_err(|_| InstallError::UnknownPeer)?;
        if peer >= self.peers.len() {
            return Err(InstallError::UnknownPeer);
        }
        let slot = slot_of(k.local_index);
        let new = Box::new(KeySlot::new(k, self.lane)?);
        self.clear_slot(slot);
        self.slots[slot] = Some(new);
        self.installed += 1;
        let s = u16::try_from(slot).ok();
        if k.initiator {
            self.peers[peer].current = s;
        } else {
            self.peers[peer].pending = s;
        }
        Ok(())
    }

    /// Forgets the key of `local_index` (the whole index must match).
    /// Returns whether there was one.
    pub fn revoke(&mut self, local_index: u32) -> bool {
        let slot = slot_of(local_index);
        if self.slots[slot]
            .as_ref()
            .is_some_and(|k| k.local_index == local_index)
        {
            self.clear_slot(slot);
            true
        } else {
            false
        }
    }

    /// Forgets every expired key (cold path: housekeeping).
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        for s in 0..self.slots.len() {
            if self.slots[s].as_ref().is_some_and(|k| k.expired(now)) {
                self.clear_slot(s);
                n += 1;
            }
        }
        n
    }

    fn clear_slot(&mut self, slot: usize) {
        if let Some(old) = self.slots[slot].take() {
            self.installed -= 1;
            let s = u16::try_from(slot).ok();
            if let Some(p) = usize::try_from(old.peer)
                .ok()
                .and_then(|p| self.peers.get_mut(p))
            {
                if p.current == s {
                    p.current = None;
                }
                if p.pending == s {
                    p.pending = None;
                }
            }
        }
    }

    /// The key that seals packets to `peer` at `now`, with its next counter.
    #[inline]
    pub fn sending(&mut self, peer: usize, now: u64) -> Result<(&KeySlot, u64), KeyError> {
        let slot = self
            .peers
            .get(peer)
            .and_then(|p| p.current)
            .ok_or(KeyError::NoKey)?;
        let k = self.slots[usize::from(slot)]
            .as_deref_mut()
            .ok_or(KeyError::NoKey)?;
        if k.expired(now) {
            return Err(KeyError::Expired);
        }
        let c = k.next_counter()?;
        Ok((k, c))
    }

    /// The peer has a usable sending key at `now`.
    pub fn can_send(&self, peer: usize, now: u64) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.current)
            .and_then(|s| self.slots[usize::from(s)].as_deref())
            .is_some_and(|k| !k.expired(now) && k.send_counter < LANE_MESSAGES)
    }

    /// The key a received packet names by its receiver index, if installed
    /// (the whole index must match) and not expired at `now`.
    #[inline]
    pub fn receiving(&self, index: u32, now: u64) -> Result<&KeySlot, KeyError> {
        let k = self.slots[slot_of(index)]
            .as_deref()
            .filter(|k| k.local_index == index)
            .ok_or(KeyError::NoKey)?;
        if k.expired(now) {
            return Err(KeyError::Expired);
        }
        Ok(k)
    }

    /// Another worker of the gateway confirmed the responder key of
    /// `local_index` (a packet authenticated with it there): it becomes
    /// its peer's current sending key here too, as [`Self::accept`] makes
    /// it on the worker that saw the packet. Returns whether it was
    /// pending here.
    pub fn confirm(&mut self, local_index: u32) -> bool {
        let slot = slot_of(local_index);
        let Some(k) = self.slots[slot]
            .as_deref_mut()
            .filter(|k| k.local_index == local_index)
        else {
            return false;
        };
        if k.confirmed {
            return false;
        }
        k.confirmed = true;
        let s = u16::try_from(slot).ok();
        match usize::try_from(k.peer)
            .ok()
            .and_then(|p| self.peers.get_mut(p))
        {
            Some(p) if p.pending == s => {
                p.current = s;
                p.pending = None;
                true
            }
            _ => false,
        }
    }

    /// After a successful open with the key of `index`: the replay check
    /// (recording `counter`), the key's receive statistics, and the key
    /// confirmation of a pending responder key.
    #[inline]
    pub fn accept(&mut self, index: u32, counter: u64, now: u64) -> Result<Accepted, Replay> {
        let slot = slot_of(index);
        let Some(k) = self.slots[slot].as_deref_mut() else {
            // `receiving` found it a moment ago; nothing to record.
            return Err(Replay::Duplicate);
        };
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Replay::Limit);
        }
        let (lane, n) = split_counter(counter);
        k.replay.get_mut(lane).ok_or(Replay::Limit)?.update(n)?;
        k.rx_packets += 1;
        k.last_rx_ns = now;
        let peer = k.peer;
        let mut confirmed_now = false;
        if !k.confirmed {
            k.confirmed = true;
            let s = u16::try_from(slot).ok();
            if let Some(p) = usize::try_from(peer)
                .ok()
                .and_then(|p| self.peers.get_mut(p))
                && p.pending == s
            {
                p.current = s;
                p.pending = None;
                confirmed_now = true;
            }
        }
        Ok(Accepted {
            peer,
            confirmed_now,
        })
    }

    /// Usage of every installed key, in slot order.
    pub fn usage(&self) -> impl Iterator<Item = KeyUsage> + '_ {
        self.slots.iter().flatten().map(|k| KeyUsage {
            local_index: k.local_index,
            peer: k.peer,
            sent: k.send_counter,
            received: k.rx_packets,
            last_rx_ns: k.last_rx_ns,
            confirmed: k.confirmed,
        })
    }

    /// The key in the slot of `index` (tests and telemetry).
    pub fn get(&self, index: u32) -> Option<&KeySlot> {
        self.slots[slot_of(index)]
            .as_deref()
            .filter(|k| k.local_index == index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SEC;

    fn key(peer: u32, local_index: u32, initiator: bool, created_ns: u64) -> KeyInstall {
        KeyInstall {
            peer,
            local_index,
            remote_index: local_index ^ 0xFFFF_0000,
            send_key: [peer.to_le_bytes()[0]; 32],
            recv_key: [local_index.to_le_bytes()[0]; 32],
            initiator,
            created_ns,
        }
    }

    #[test]
    fn initiator_key_sends_at_once_counters_increase() {
        let mut t = KeyTable::new(2);
        assert_eq!(t.sending(0, 0).err(), Some(KeyError::NoKey));
        t.install(&key(0, 0x100_0004, true, 0)).unwrap();
        assert!(t.can_send(0, 1));
        let (k, c0) = t.sending(0, 1).unwrap();
        assert_eq!((k.remote_index, c0), (0x100_0004 ^ 0xFFFF_0000, 0));
        assert_eq!(t.sending(0, 1).unwrap().1, 1);
        assert_eq!(t.sending(1, 1).err(), Some(KeyError::NoKey));
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.install(&key(2, 5, true, 0)),
            Err(InstallError::UnknownPeer)
        );
    }

    #[test]
    fn responder_key_waits_for_confirmation() {
        let mut t = KeyTable::new(1);
        t.install(&key(0, 4, true, 0)).unwrap();
        // A new handshake where we respond: the old key keeps sending.
        t.install(&key(0, 5, false, 10)).unwrap();
        assert_eq!(t.sending(0, 11).unwrap().0.local_index, 4);
        // The old key still opens.
        assert!(t.receiving(4, 11).is_ok());
        // First packet with the new key: confirmed, now current.
        assert!(t.receiving(5, 12).is_ok());
        let a = t.accept(5, 0, 12).unwrap();
        assert_eq!(
            a,
            Accepted {
                peer: 0,
                confirmed_now: true
            }
        );
        assert_eq!(t.sending(0, 13).unwrap().0.local_index, 5);
        assert!(!t.accept(5, 1, 13).unwrap().confirmed_now);
        // The previous key still opens until it expires.
        assert!(t.accept(4, 7, 13).is_ok());
        assert_eq!(
            t.receiving(4, REJECT_AFTER_TIME_NS).err(),
            Some(KeyError::Expired)
        );
        assert_eq!(t.expire(REJECT_AFTER_TIME_NS), 1);
        assert_eq!(t.receiving(4, 0).err(), Some(KeyError::NoKey));
        assert!(t.receiving(5, REJECT_AFTER_TIME_NS).is_ok());
        let u: Vec<_> = t.usage().collect();
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].local_index, u[0].sent, u[0].received), (5, 1, 2));
        assert!(u[0].confirmed);
    }

    #[test]
    fn index_must_match_whole_and_replays_are_refused() {
        let mut t = KeyTable::new(1);
        t.install(&key(0, 0xABC0_0007, true, 0)).unwrap();
        assert!(t.receiving(0xABC0_0007, 0).is_ok());
        // Same slot, other high bits: no key.
        assert_eq!(t.receiving(0x1230_0007, 0).err(), Some(KeyError::NoKey));
        assert_eq!(t.receiving(8, 0).err(), Some(KeyError::NoKey));
        assert!(t.accept(0xABC0_0007, 3, 1).is_ok());
        assert_eq!(t.accept(0xABC0_0007, 3, 1), Err(Replay::Duplicate));
        assert_eq!(
            t.accept(0xABC0_0007, REJECT_AFTER_MESSAGES, 1),
            Err(Replay::Limit)
        );
        assert_eq!(t.get(0xABC0_0007).unwrap().rx_packets, 1);
        // Revoke needs the whole index.
        assert!(!t.revoke(0x0000_0007));
        assert!(t.revoke(0xABC0_0007));
        assert!(t.is_empty());
        assert_eq!(t.sending(0, 2).err(), Some(KeyError::NoKey));
    }

    #[test]
    fn slot_reuse_replaces_the_old_key() {
        let mut t = KeyTable::new(2);
        t.install(&key(0, 0x1_0003, true, 0)).unwrap();
        // The control reuses slot 3 for another handshake (of peer 1).
        t.install(&key(1, 0x2_0003, true, 5)).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.receiving(0x1_0003, 6).err(), Some(KeyError::NoKey));
        assert_eq!(t.sending(0, 6).err(), Some(KeyError::NoKey));
        assert_eq!(t.sending(1, 6).unwrap().0.peer, 1);
    }

    #[test]
    fn expiry_and_exhaustion() {
        let mut t = KeyTable::new(1);
        t.install(&key(0, 1, true, 10 * SEC)).unwrap();
        assert!(t.sending(0, 10 * SEC + REJECT_AFTER_TIME_NS - 1).is_ok());
        assert_eq!(
            t.sending(0, 10 * SEC + REJECT_AFTER_TIME_NS).err(),
            Some(KeyError::Expired)
        );
        assert!(!t.can_send(0, 10 * SEC + REJECT_AFTER_TIME_NS));
        let k = t.slots[1].as_deref_mut().unwrap();
        k.send_counter = LANE_MESSAGES - 1;
        assert_eq!(t.sending(0, 10 * SEC).unwrap().1, LANE_MESSAGES - 1);
        assert_eq!(t.sending(0, 10 * SEC).err(), Some(KeyError::Exhausted));
        assert!(!t.can_send(0, 10 * SEC));
    }

    /// Two workers sealing with one key hand out disjoint counters (their
    /// lanes), and the receiver accepts both streams interleaved, each in
    /// its own replay window: a duplicate in either lane is refused, a
    /// counter of a lane beyond [`MAX_LANES`] too.
    #[test]
    fn workers_seal_in_their_own_lanes() {
        let mut w0 = KeyTable::with_lane(1, 0);
        let mut w1 = KeyTable::with_lane(1, 1);
        let mut rx = KeyTable::new(1);
        for t in [&mut w0, &mut w1, &mut rx] {
            t.install(&key(0, 9, true, 0)).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let c0 = w0.sending(0, 1).unwrap().1;
            let c1 = w1.sending(0, 1).unwrap().1;
            assert!(seen.insert(c0) && seen.insert(c1), "never the same counter");
            assert_eq!((split_counter(c0).0, split_counter(c1).0), (0, 1));
            // Worker 1's packets arrive first: worker 0's are not too old.
            assert!(rx.accept(9, c1, 2).is_ok());
            assert!(rx.accept(9, c0, 2).is_ok());
            assert_eq!(rx.accept(9, c1, 2), Err(Replay::Duplicate));
        }
        let k = rx.get(9).unwrap();
        assert_eq!(k.replay_check(1 << LANE_SHIFT), Err(Replay::Duplicate));
        assert!(k.replay_check((1 << LANE_SHIFT) + 100).is_ok());
        assert_eq!(k.replay_check(REJECT_AFTER_MESSAGES), Err(Replay::Limit));
        assert_eq!(w0.get(9).unwrap().sent(), 100, "packets sealed in its lane");
        // A lane's last counter, then exhausted (the other lanes untouched).
        w1.slots[9].as_deref_mut().unwrap().send_counter = LANE_MESSAGES - 1;
        assert_eq!(
            w1.sending(0, 1).unwrap().1,
            (1 << LANE_SHIFT) | (LANE_MESSAGES - 1)
        );
        assert_eq!(w1.sending(0, 1).err(), Some(KeyError::Exhausted));
        assert!(w0.sending(0, 1).is_ok());
        assert_eq!(MAX_LANES as u64 * LANE_MESSAGES, REJECT_AFTER_MESSAGES);
    }

    /// A responder key another worker confirmed becomes current here too,
    /// once; an unknown index or an initiator key changes nothing.
    #[test]
    fn a_key_confirmed_elsewhere_becomes_current() {
        let mut t = KeyTable::new(1);
        t.install(&key(0, 1, true, 0)).unwrap();
        t.install(&key(0, 2, false, 0)).unwrap();
        assert_eq!(
            t.sending(0, 1).unwrap().0.local_index,
            1,
            "old key still seals"
        );
        assert!(!t.confirm(0x1_0002), "another index in the slot");
        assert!(!t.confirm(1), "initiator keys are confirmed already");
        assert!(t.confirm(2));
        assert_eq!(t.sending(0, 1).unwrap().0.local_index, 2);
        assert!(!t.confirm(2), "once");
    }
}
