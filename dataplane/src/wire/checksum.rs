//! The Internet checksum: ones-complement sum of 16-bit big-endian words
//! (RFC 1071), pseudo-headers for UDP/ICMPv6, and incremental update (RFC 1624).
//!
//! Conventions (as in smoltcp): [`data`] and [`combine`] return the folded
//! ones-complement *sum* (not yet inverted); the value stored in a header's
//! checksum field is `!sum`. A header verifies when the sum over it, checksum
//! field included, is `0xFFFF`.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide accumulator to a 16-bit ones-complement sum (end-around carry).
///
/// Four fixed steps, no loop: after the first the value is below 2^33, after
/// the second below 2^18, after the third at most `0x1_0001`, after the
/// fourth at most `0xFFFF`. Each step keeps the value modulo `0xFFFF` and
/// keeps a non-zero value non-zero, so the result is the one representative
/// in `1..=0xFFFF` (or 0 for 0) that a fold-until-small loop returns too.
#[inline]
pub const fn fold(acc: u64) -> u16 {
    let acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    // The steps above leave acc <= 0xFFFF.
    #[allow(clippy::cast_possible_truncation)]
    let r = acc as u16;
    r
}

/// Ones-complement sum of `data` taken as big-endian 16-bit words (an odd last
/// byte is padded with a zero byte), folded to 16 bits, not inverted.
///
/// Fast path: 32-bit native-endian words summed into four independent 64-bit
/// accumulators (no carries to propagate until the end, so the compiler can
/// vectorise it); the byte-order independence of the ones-complement sum
/// (RFC 1071 section 2(B)) lets us swap once at the end instead of per word.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    let mut acc = [0u64; 4];
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        for (i, a) in acc.iter_mut().enumerate() {
            let w = [c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]];
            *a += u64::from(u32::from_ne_bytes(w));
        }
    }
    let mut rest = chunks.remainder();
    let mut words = 0u64;
    while rest.len() >= 4 {
        words += u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    // Each accumulator holds len / 16 words below 2^32 (under 2^28 * len),
    // `words` at most three: their sum is under 2^30 * len + 2^34, below
    // 2^64 for any slice under 16 GiB (a frame is at most 64 KiB), so one
    // fold will do.
    let native = fold(acc[0] + acc[1] + acc[2] + acc[3] + words);
    // `native` is the sum of byte-swapped words on little-endian hosts.
    let mut sum = u64::from(u16::from_be(native));
    if rest.len() >= 2 {
        sum += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        sum += u64::from(u16::from_be_bytes([b, 0]));
    }
    fold(sum)
}

/// Reference implementation of [`data`]: one 16-bit word at a time.
pub fn data_reference(data: &[u8]) -> u16 {
    let mut sum = 0u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let Some(&b) = chunks.remainder().first() {
        sum += u64::from(u16::from_be_bytes([b, 0]));
    }
    fold(sum)
}

/// Ones-complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Partial sum of the IPv4 pseudo-header (RFC 768): addresses, protocol, length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc = u64::from(next_header) + u64::from(length);
    for seg in src.segments().into_iter().chain(dst.segments()) {
        acc += u64::from(seg);
    }
    fold(acc)
}

/// The checksum field value for a ones-complement `sum`: its inverse.
#[inline]
pub const fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624 equation 3: the new checksum `HC' = ~(~HC + ~m + m')` after a
/// 16-bit field changes from `old` (m) to `new` (m').
#[inline]
pub const fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(!checksum as u64 + !old as u64 + new as u64)
}

/// [`update16`] for a 32-bit field (two 16-bit words).
#[inline]
pub const fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let a = split32(old);
    let b = split32(new);
    update16(update16(checksum, a.0, b.0), a.1, b.1)
}

#[inline]
const fn split32(v: u32) -> (u16, u16) {
    let b = v.to_be_bytes();
    (
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&b), 0xddf2);
        assert_eq!(data_reference(&b), 0xddf2);
    }

    #[test]
    fn ipv4_header_known_vector() {
        // A classic header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(data(&h)), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(data(&h), 0xffff);
    }

    #[test]
    fn odd_lengths_and_empty() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    /// The fold as RFC 1071 writes it: add the carries back until none is left.
    fn fold_loop(mut acc: u64) -> u16 {
        while acc > 0xFFFF {
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        u16::try_from(acc).unwrap()
    }

    #[test]
    fn fold_matches_the_loop_at_the_edges() {
        for acc in [
            0,
            1,
            0xFFFF,
            0x1_0000,
            0x1_0001,
            0x1_FFFE,
            0xFFFF_FFFF,
            0x1_0000_0000,
            0xFFFF_FFFF_FFFF,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(fold(acc), fold_loop(acc), "{acc:#x}");
        }
    }

    proptest! {
        #[test]
        fn fast_sum_matches_reference( d in proptest::collection::vec(any::<u8>(), 0..2100)) {
            prop_assert_eq!(data(&d), data_reference(&d));
        }

        #[test]
        fn fold_matches_the_loop(acc in any::<u64>(), shift in 0u32..64) {
            let acc = acc >> shift;
            prop_assert_eq!(fold(acc), fold_loop(acc));
        }

        #[test]
        fn sum_is_split_invariant_at_even_offsets(d in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(d.len() & !1);
            prop_assert_eq!(combine(&[data(&d[..cut]), data(&d[cut..])]), data(&d));
        }

        #[test]
        fn incremental_update_matches_recompute(mut d in proptest::collection::vec(any::<u8>(), 4..64), at in 0usize..30, new in any::<u16>()) {
            // Place a checksum in the first word, then change another word.
            let at = 2 + (at * 2) % ((d.len() & !1) - 2);
            d[0] = 0; d[1] = 0;
            let c = finish(data(&d));
            d[..2].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([d[at], d[at + 1]]);
            d[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update16(c, old, new);
            d[..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert_eq!(data(&d), 0xffff);
        }
    }
}
