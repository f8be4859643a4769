//! Public keys in the configuration: standard base64 (RFC 4648, with
//! padding) of 32 bytes, 44 characters, as `wg` and `mongate keygen` print
//! them.

/// Length of a base64-encoded 32-byte key.
pub const KEY_BASE64_LEN: usize = 44;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes a 32-byte key: exactly 44 characters of standard base64 ending in
/// one `=`, with the unused low bits of the last character zero (one
/// spelling per key). Surrounding whitespace is trimmed.
pub fn decode_key(s: &str) -> Result<[u8; 32], &'static str> {
    let b = s.trim().as_bytes();
    if b.len() != KEY_BASE64_LEN || b[KEY_BASE64_LEN - 1] != b'=' {
        return Err("want 44 characters of base64 (32 bytes)");
    }
    let mut out = [0u8; 32];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in &b[..KEY_BASE64_LEN - 1] {
        acc = acc << 6 | sextet(c).ok_or("not base64")?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if n < out.len() {
                out[n] = u8::try_from((acc >> bits) & 0xFF).unwrap_or(0);
                n += 1;
            }
        }
    }
    // 43 characters = 258 bits: 256 of key, 2 that must be zero.
    if n != out.len() || acc & ((1 << bits) - 1) != 0 {
        return Err("not the base64 of 32 bytes");
    }
    Ok(out)
}

/// Encodes a 32-byte key as [`decode_key`] reads it.
pub fn encode_key(k: &[u8; 32]) -> String {
    let mut s = String::with_capacity(KEY_BASE64_LEN);
    for c in k.chunks(3) {
        let w = c
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, b)| w | u32::from(*b) << (16 - 8 * i));
        for i in 0..=c.len() {
            s.push(char::from(ALPHABET[((w >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    while s.len() < KEY_BASE64_LEN {
        s.push('=');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        // RFC 7748 section 6.1: Alice's public key, as `wg pubkey` prints it.
        let k = decode_key("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=").unwrap();
        assert_eq!(k[..4], [0x85, 0x20, 0xf0, 0x09]);
        assert_eq!(k[28..], [0xaa, 0x9b, 0x4e, 0x6a]);
        assert_eq!(
            encode_key(&k),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo",
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo==",
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm*=",
            // Nonzero unused bits in the last character.
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=",
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbT=o=",
        ] {
            assert!(decode_key(s).is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(k in any::<[u8; 32]>()) {
            let s = encode_key(&k);
            prop_assert_eq!(s.len(), KEY_BASE64_LEN);
            prop_assert_eq!(decode_key(&s), Ok(k));
        }

        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = decode_key(&s);
        }
    }
}
