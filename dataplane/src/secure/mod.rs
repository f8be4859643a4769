//! The dataplane's share of the overlay's security: session keys handed over
//! by the control process, the AEAD that seals and opens every packet between
//! gateways, and the replay window. Pure: time comes in as an argument.
//!
//! - [`replay`]: [`ReplayWindow`], RFC 6479's sliding bitmap (4096 bits).
//! - [`keys`]: [`KeyTable`], the installed keys by slot, current and pending
//!   per peer, expiry.
//! - [`aead`]: [`aead::seal`] / [`aead::open`] in place.
//!
//! The constants are WireGuard's where it has one.

pub mod aead;
pub mod keys;
pub mod replay;

pub use keys::{KeyError, KeySlot, KeyTable};
pub use replay::{Replay, ReplayWindow};

use crate::sys::SEC;

pub use crate::shm::msg::{KEY_SLOT_BITS, KEY_SLOTS};

/// Key slots per peer (current, pending and two in hand-over).
pub const KEYS_PER_PEER: u32 = 4;
/// Most peers a gateway has: every peer holds [`KEYS_PER_PEER`] of the
/// [`KEY_SLOTS`]. The configuration refuses more (`peers`), which also bounds
/// the tables sized peers × peers (the plan's detours) to 65 536 entries.
#[allow(clippy::cast_possible_truncation)] // 1024 / 4
pub const MAX_PEERS: u32 = KEY_SLOTS as u32 / KEYS_PER_PEER;

/// The AEAD of the overlay's session keys (32-byte key, 96-bit nonce,
/// 16-byte tag): AES-256-GCM, 2.5 to 4 times faster than ChaCha20-Poly1305
/// where AES-NI and CLMUL are present (x86-64 servers, ARMv8 with the crypto
/// extensions; `cargo bench --bench secure`). `ring::aead::CHACHA20_POLY1305`
/// (WireGuard's) fits the same wire format and keys: both ends must agree.
/// Nonces are counters, never random, so GCM's nonce bound does not apply;
/// keys are replaced every `rekey_after_seconds` anyway.
pub static AEAD_ALGORITHM: &ring::aead::Algorithm = &ring::aead::AES_256_GCM;

/// A session key is refused (for sending and receiving) this long after the
/// handshake that made it.
pub const REJECT_AFTER_TIME_NS: u64 = 180 * SEC;
/// After a gateway starts, how long a path whose next gateway has no session
/// key yet is not declared down for silence (its probes cannot be sealed,
/// so its silence says nothing): two handshake retries' time. After it a
/// path without a key falls silent like any other, so a peer that never
/// answers a handshake is seen down.
pub const FIRST_HANDSHAKE_GRACE_NS: u64 = 10 * SEC;
/// A key seals at most this many packets; a received counter at or beyond
/// it is refused.
pub const REJECT_AFTER_MESSAGES: u64 = 1 << 60;
/// A counter's lane: the sending worker's index in its top bits (bits 56
/// to 59), so that the workers of one gateway, each sealing with its own
/// copy of a key, never hand out the same counter; the receiver keeps a
/// replay window per lane. One worker: lane 0, the counters as before.
pub const LANE_SHIFT: u32 = 56;
/// Lanes (workers sealing with one key) at most: `MAX_LANES << LANE_SHIFT`
/// is [`REJECT_AFTER_MESSAGES`].
pub const MAX_LANES: usize = 16;
/// Counters per lane: a worker seals at most this many packets per key.
pub const LANE_MESSAGES: u64 = 1 << LANE_SHIFT;

/// A counter's (lane, counter within the lane).
#[inline]
pub const fn split_counter(c: u64) -> (usize, u64) {
    // Below 2^64 >> 56 = 256: fits any usize.
    ((c >> LANE_SHIFT) as usize, c & (LANE_MESSAGES - 1))
}
/// Default rekey interval (`[security] rekey_after_seconds`).
pub const REKEY_AFTER_SECONDS: u64 = 120;
/// Default rekey packet count (`[security] rekey_after_packets`).
pub const REKEY_AFTER_PACKETS: u64 = 1 << 60;
