//! A model of the dataplane's key table (`dataplane/src/secure/keys.rs` as SECURITY.md
//! describes it), for deterministic tests of the handshake and its driver: keys stored by slot
//! (the full index compared), initiator keys sending at once, a responder key sending once a
//! packet authenticated with it, keys expiring [`REJECT_AFTER_TIME`] after creation. A "packet"
//! is the receiver index, a counter and a tag keyed with the sending key, so a packet opens only
//! under the very key it was sealed with.

use std::collections::BTreeMap;

use blake2::Blake2sMac;
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use mongate_dataplane::sys::Nanos;

use super::handshake::{REJECT_AFTER_TIME, SLOT_MASK, SessionKeys};

/// A sealed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimPacket {
    /// Receiver index (the peer's local index of the key).
    pub receiver: u32,
    /// Send counter.
    pub counter: u64,
    /// Tag keyed with the sending key.
    pub tag: [u8; 16],
}

/// Why a packet did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimDrop {
    /// No key with that index.
    NoKey,
    /// The tag does not verify.
    Auth,
    /// The key is too old.
    Expired,
}

/// A key as the dataplane reports it (`Telemetry::Keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimUsage {
    /// Local index.
    pub local_index: u32,
    /// Peer.
    pub peer: u32,
    /// Packets sent.
    pub sent: u64,
    /// Packets received.
    pub received: u64,
    /// When the last packet opened with it arrived (0: never).
    pub last_rx: Nanos,
    /// Sending with it (initiator keys at once, responder keys once the peer used them).
    pub confirmed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    peer: u32,
    keys: SessionKeys,
    confirmed: bool,
    sent: u64,
    received: u64,
    last_rx: Nanos,
}

fn tag(key: &[u8; 32], counter: u64) -> [u8; 16] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("32-byte key");
    Mac::update(&mut m, &counter.to_be_bytes());
    m.finalize().into_bytes().into()
}

/// The key table of one simulated dataplane.
#[derive(Clone, Debug, Default)]
pub struct SimKeys {
    slots: BTreeMap<u32, Slot>,
    /// Per peer: the slot its packets are sealed with.
    sending: BTreeMap<u32, u32>,
    /// Packets that did not open, by reason.
    pub drops: BTreeMap<&'static str, u64>,
}

impl SimKeys {
    /// An empty table (a fresh dataplane).
    pub fn new() -> Self {
        Self::default()
    }

    /// `Command::InstallKey`.
    pub fn install(&mut self, peer: u32, keys: SessionKeys) {
        let s = keys.local_index & SLOT_MASK;
        self.slots.insert(
            s,
            Slot {
                peer,
                keys,
                confirmed: keys.initiator,
                sent: 0,
                received: 0,
                last_rx: 0,
            },
        );
        if keys.initiator {
            self.sending.insert(peer, s);
        } else if self.sending.get(&peer) == Some(&s) {
            // The slot's old key was the sending one: nothing to send with until confirmed.
            self.sending.remove(&peer);
        }
    }

    /// `Command::RevokeKey`.
    pub fn revoke(&mut self, local_index: u32) {
        let s = local_index & SLOT_MASK;
        if self
            .slots
            .get(&s)
            .is_some_and(|x| x.keys.local_index == local_index)
        {
            let peer = self.slots.remove(&s).map(|x| x.peer);
            if let Some(p) = peer
                && self.sending.get(&p) == Some(&s)
            {
                self.sending.remove(&p);
            }
        }
    }

    /// Seals a packet to `peer` (`None`: no usable key).
    pub fn seal(&mut self, peer: u32, now: Nanos) -> Option<SimPacket> {
        let s = *self.sending.get(&peer)?;
        let k = self.slots.get_mut(&s)?;
        if now >= k.keys.created.saturating_add(REJECT_AFTER_TIME) {
            return None;
        }
        let counter = k.sent;
        k.sent += 1;
        Some(SimPacket {
            receiver: k.keys.remote_index,
            counter,
            tag: tag(&k.keys.send, counter),
        })
    }

    /// Opens a packet: the peer it authenticates, or why not (counted in `drops`).
    pub fn open(&mut self, p: &SimPacket, now: Nanos) -> Result<u32, SimDrop> {
        let r = self.open_inner(p, now);
        if let Err(e) = r {
            let name = match e {
                SimDrop::NoKey => "auth_no_key",
                SimDrop::Auth => "auth_failed",
                SimDrop::Expired => "auth_expired",
            };
            *self.drops.entry(name).or_default() += 1;
        }
        r
    }

    fn open_inner(&mut self, p: &SimPacket, now: Nanos) -> Result<u32, SimDrop> {
        let s = p.receiver & SLOT_MASK;
        let k = self
            .slots
            .get_mut(&s)
            .filter(|k| k.keys.local_index == p.receiver)
            .ok_or(SimDrop::NoKey)?;
        if tag(&k.keys.recv, p.counter) != p.tag {
            return Err(SimDrop::Auth);
        }
        if now >= k.keys.created.saturating_add(REJECT_AFTER_TIME) {
            return Err(SimDrop::Expired);
        }
        k.received += 1;
        k.last_rx = now;
        let peer = k.peer;
        if !k.confirmed {
            k.confirmed = true;
            self.sending.insert(peer, s);
        }
        Ok(peer)
    }

    /// `Telemetry::Keys`: every key held.
    pub fn report(&self) -> Vec<SimUsage> {
        self.slots
            .values()
            .map(|k| SimUsage {
                local_index: k.keys.local_index,
                peer: k.peer,
                sent: k.sent,
                received: k.received,
                last_rx: k.last_rx,
                confirmed: k.confirmed,
            })
            .collect()
    }

    /// The local index of the key packets to `peer` are sealed with.
    pub fn sending(&self, peer: u32) -> Option<u32> {
        let s = self.sending.get(&peer)?;
        self.slots.get(s).map(|k| k.keys.local_index)
    }

    /// The keys held for `peer`.
    pub fn keys_of(&self, peer: u32) -> Vec<SessionKeys> {
        self.slots
            .values()
            .filter(|k| k.peer == peer)
            .map(|k| k.keys)
            .collect()
    }

    /// Packets that did not open, in total.
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }
}
