//! Sealing and opening overlay packets in place with the overlay's AEAD
//! ([`super::AEAD_ALGORITHM`], AES-256-GCM from `ring`): the associated data is the GENEVE header with all its options
//! (flow and security option included), the inner frame (or OAM message) is
//! encrypted where it lies, and the 16-byte tag trails it. The outer
//! Ethernet/IP/UDP headers are not covered (NAT and roaming change them).
//! Nonce: 4 zero bytes and the counter little-endian
//! ([`SecurityOption::aead_nonce`]).

use core::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag};

use crate::wire::geneve::{AEAD_TAG_LEN, SecurityOption};
use crate::wire::overlay::{Decapped, OverlayTemplate};

/// Why sealing or opening failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadError {
    /// The frame is not laid out as the template or the parse says (too
    /// short, no tag, not a secure template).
    Layout,
    /// The tag does not authenticate the packet (forged, corrupted, or
    /// another key).
    Auth,
}

/// Seals `out`, a frame the secure `template` just encapsulated with
/// [`OverlayTemplate::encap_to_seal`] (its security option holding the
/// peer's receiver index and `counter`), in place: encrypts the inner bytes,
/// writes the tag, then the UDP checksum when the template uses one.
#[inline]
pub fn seal(
    template: &OverlayTemplate,
    out: &mut [u8],
    key: &LessSafeKey,
    counter: u64,
) -> Result<(), AeadError> {
    let hl = template.header_len();
    let g = template.geneve_offset();
    if !template.secure() || out.len() < hl + AEAD_TAG_LEN {
        return Err(AeadError::Layout);
    }
    let tag_at = out.len() - AEAD_TAG_LEN;
    let (head, rest) = out.split_at_mut(hl);
    let (body, tag_out) = rest.split_at_mut(tag_at - hl);
    let nonce = Nonce::assume_unique_for_key(SecurityOption::aead_nonce(counter));
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(&head[g..]), body)
        .map_err(|_| AeadError::Layout)?;
    tag_out.copy_from_slice(tag.as_ref());
    template.finish_udp_checksum(out);
    Ok(())
}

/// Opens a received frame in place: `d` is what `overlay::decap` found in
/// it (with a security option), `counter` that option's counter. On success
/// `frame[d.inner]` holds the plaintext. One call is one AEAD open.
#[inline]
pub fn open(
    frame: &mut [u8],
    d: &Decapped,
    key: &LessSafeKey,
    counter: u64,
) -> Result<(), AeadError> {
    open_at(frame, d.meta.geneve_off, &d.inner, &d.tag, key, counter)
}

/// [`open`] by offsets: associated data `aad_start..inner.start`, ciphertext
/// `inner`, tag `tag`.
#[inline]
pub fn open_at(
    frame: &mut [u8],
    aad_start: usize,
    inner: &Range<usize>,
    tag: &Range<usize>,
    key: &LessSafeKey,
    counter: u64,
) -> Result<(), AeadError> {
    if aad_start > inner.start
        || inner.start > inner.end
        || tag.start != inner.end
        || tag.len() != AEAD_TAG_LEN
        || tag.end > frame.len()
    {
        return Err(AeadError::Layout);
    }
    let mut t = [0u8; AEAD_TAG_LEN];
    t.copy_from_slice(&frame[tag.clone()]);
    let (head, rest) = frame.split_at_mut(inner.start);
    let body = &mut rest[..inner.len()];
    let nonce = Nonce::assume_unique_for_key(SecurityOption::aead_nonce(counter));
    key.open_in_place_separate_tag(
        nonce,
        Aad::from(&head[aad_start..]),
        Tag::from(t),
        body,
        0..,
    )
    .map(|_| ())
    .map_err(|_| AeadError::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::geneve::FlowOption;
    use crate::wire::overlay::{EncapParams, decap, tests::cfg_v4, tests::cfg_v6};
    use proptest::prelude::*;
    use ring::aead::{CHACHA20_POLY1305, UnboundKey};

    fn key(b: u8) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[b; 32]).unwrap())
    }

    /// A sealed frame of `inner` (headroom exactly the header), its template.
    fn sealed(v6: bool, inner: &[u8], index: u32, counter: u64, k: &LessSafeKey) -> Vec<u8> {
        let mut c = if v6 { cfg_v6() } else { cfg_v4() };
        c.secure = true;
        let t = OverlayTemplate::new(&c).unwrap();
        let hl = t.header_len();
        let mut b = vec![0u8; hl + inner.len() + AEAD_TAG_LEN];
        b[hl..hl + inner.len()].copy_from_slice(inner);
        let p = EncapParams {
            flow: FlowOption {
                flow_id: 7,
                seq: 9,
                timestamp_ns: 11,
            },
            entropy: 0x1234,
            oam: false,
            security: SecurityOption {
                receiver_index: index,
                counter,
            },
        };
        let r = t.encap_to_seal(&mut b, hl, inner.len(), &p).unwrap();
        seal(&t, &mut b[r.clone()], k, counter).unwrap();
        b
    }

    #[test]
    fn round_trip_v4_v6_and_checksums() {
        let k = key(1);
        let inner: Vec<u8> = (0..200u8).collect();
        for v6 in [false, true] {
            let mut b = sealed(v6, &inner, 42, 5, &k);
            // The UDP checksum (always on over IPv6) covers the ciphertext.
            let d = decap(&b, true).unwrap();
            assert_ne!(&b[d.inner.clone()], &inner[..], "encrypted");
            assert_eq!(
                d.meta.security,
                Some(SecurityOption {
                    receiver_index: 42,
                    counter: 5
                })
            );
            open(&mut b, &d, &k, 5).unwrap();
            assert_eq!(&b[d.inner.clone()], &inner[..]);
        }
    }

    #[test]
    fn wrong_key_counter_or_layout_fails() {
        let k = key(1);
        let b = sealed(false, b"hello", 1, 3, &k);
        let d = decap(&b, false).unwrap();
        assert_eq!(open(&mut b.clone(), &d, &key(2), 3), Err(AeadError::Auth));
        assert_eq!(open(&mut b.clone(), &d, &k, 4), Err(AeadError::Auth));
        let mut short = d.clone();
        short.tag = d.tag.start..d.tag.end - 1;
        assert_eq!(open(&mut b.clone(), &short, &k, 3), Err(AeadError::Layout));
        // An insecure template cannot seal.
        let t = OverlayTemplate::new(&cfg_v4()).unwrap();
        assert_eq!(seal(&t, &mut [0u8; 200], &k, 0), Err(AeadError::Layout));
    }

    #[test]
    fn empty_inner_seals() {
        let k = key(3);
        let mut b = sealed(true, &[], 1, 0, &k);
        let d = decap(&b, true).unwrap();
        assert!(d.inner.is_empty());
        open(&mut b, &d, &k, 0).unwrap();
    }

    proptest! {
        /// One bit flipped anywhere from the GENEVE header to the tag's end
        /// fails the open; outside (outer headers) it does not matter.
        #[test]
        fn any_flipped_bit_fails(v6 in any::<bool>(), len in 0usize..300, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = key(9);
            let inner: Vec<u8> = (0..len).map(|i| i.to_le_bytes()[0]).collect();
            let b = sealed(v6, &inner, 77, 1234, &k);
            let d = decap(&b, false).unwrap();
            let covered = d.meta.geneve_off..d.tag.end;
            let i = covered.start + at.index(covered.len());
            let mut bad = b.clone();
            bad[i] ^= 1 << bit;
            // The flipped frame may not even parse (GENEVE header bits), or
            // parse without the security option (its type byte): then it
            // never reaches open; if it does, open refuses it.
            if let Ok(d2) = decap(&bad, false) {
                let counter = d2.meta.security.map_or(0, |s| s.counter);
                let r = open(&mut bad, &d2, &k, counter);
                if d2.meta.security.is_some() {
                    prop_assert_eq!(r, Err(AeadError::Auth));
                } else {
                    prop_assert!(r.is_err());
                }
            }
            let mut good = b.clone();
            prop_assert_eq!(open(&mut good, &d, &k, 1234), Ok(()));
            prop_assert_eq!(&good[d.inner.clone()], &inner[..]);
        }
    }
}
