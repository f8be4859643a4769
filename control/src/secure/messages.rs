//! The three handshake messages, as WireGuard lays them out (sizes included): the bytes the
//! dataplane carries opaquely after the 4-byte OAM header of a GENEVE OAM packet
//! (`HandshakeIn` / `HandshakeOut`).
//!
//! ```text
//! Initiation (148 bytes):
//! | type=4 | reserved=0 (3) | sender index (4) | ephemeral (32) | static (32+16) |
//! | timestamp (12+16) | mac1 (16) | mac2 (16) |
//!
//! Response (92 bytes):
//! | type=5 | reserved=0 (3) | sender index (4) | receiver index (4) | ephemeral (32) |
//! | empty (0+16) | mac1 (16) | mac2 (16) |
//!
//! Cookie reply (64 bytes):
//! | type=6 | reserved=0 (3) | receiver index (4) | nonce (24) | cookie (16+16) |
//! ```
//!
//! The type byte is the OAM message type the dataplane carries the message under. Indices are
//! big-endian. Between the indices and mac1 lie the Noise IK handshake messages (`snow`'s
//! bytes: message 1 = 108 bytes, message 2 = 48 bytes). mac1 and mac2 are over every byte
//! before them ([`super::cookie`]).
//!
//! Views follow the dataplane's `wire` pattern (smoltcp's): `new_checked` validates once (exact
//! length, type, reserved bytes zero), after which getters cannot fail; setters for
//! `T: AsMut<[u8]>`. Nothing here panics on any input ([`fuzz_handshake`]).

use core::hint::black_box;

/// Initiation length.
pub const INIT_LEN: usize = 148;
/// Response length.
pub const RESPONSE_LEN: usize = 92;
/// Cookie reply length.
pub const COOKIE_REPLY_LEN: usize = 64;
/// The longest message.
pub const MAX_LEN: usize = INIT_LEN;
/// Noise IK message 1: ephemeral 32, encrypted static 32+16, encrypted timestamp 12+16.
pub const NOISE_INIT_LEN: usize = 108;
/// Noise IK message 2: ephemeral 32, encrypted empty payload 16.
pub const NOISE_RESPONSE_LEN: usize = 48;
/// mac1 / mac2 length.
pub const MAC_LEN: usize = 16;
/// Cookie reply nonce (XChaCha20-Poly1305).
pub const NONCE_LEN: usize = 24;
/// Encrypted cookie: 16 bytes and the 16-byte tag.
pub const SEALED_COOKIE_LEN: usize = 32;

/// A byte range of a message.
type Field = core::ops::Range<usize>;

/// The messages' fields.
pub mod field {
    use super::Field;

    /// Message type (every message).
    pub const TYPE: usize = 0;
    /// Zero bytes (every message).
    pub const RESERVED: Field = 1..4;

    /// Initiation: the initiator's index.
    pub const INIT_SENDER: Field = 4..8;
    /// Initiation: Noise message 1.
    pub const INIT_NOISE: Field = 8..116;
    /// Initiation: mac1.
    pub const INIT_MAC1: Field = 116..132;
    /// Initiation: mac2.
    pub const INIT_MAC2: Field = 132..148;

    /// Response: the responder's index.
    pub const RESP_SENDER: Field = 4..8;
    /// Response: the initiator's index (from the initiation).
    pub const RESP_RECEIVER: Field = 8..12;
    /// Response: Noise message 2.
    pub const RESP_NOISE: Field = 12..60;
    /// Response: mac1.
    pub const RESP_MAC1: Field = 60..76;
    /// Response: mac2.
    pub const RESP_MAC2: Field = 76..92;

    /// Cookie reply: the sender index of the message it answers.
    pub const COOKIE_RECEIVER: Field = 4..8;
    /// Cookie reply: random nonce.
    pub const COOKIE_NONCE: Field = 8..32;
    /// Cookie reply: encrypted cookie with its tag.
    pub const COOKIE_SEALED: Field = 32..64;
}

/// Message type byte (the OAM message type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Handshake initiation.
    Init = 4,
    /// Handshake response.
    Response = 5,
    /// Cookie reply (the responder is under load).
    CookieReply = 6,
}

impl MessageType {
    /// From the type byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            4 => Some(Self::Init),
            5 => Some(Self::Response),
            6 => Some(Self::CookieReply),
            _ => None,
        }
    }
    /// The message's length.
    pub const fn wire_len(self) -> usize {
        match self {
            Self::Init => INIT_LEN,
            Self::Response => RESPONSE_LEN,
            Self::CookieReply => COOKIE_REPLY_LEN,
        }
    }
}

/// Why bytes are not a handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MessageError {
    /// Not the message's exact length.
    #[error("wrong length")]
    Length,
    /// Not the expected type byte.
    #[error("wrong message type")]
    Type,
    /// Reserved bytes not zero.
    #[error("reserved bytes not zero")]
    Reserved,
}

fn read_u32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_be_bytes(a)
}

fn write_u32(b: &mut [u8], f: Field, v: u32) {
    b[f].copy_from_slice(&v.to_be_bytes());
}

fn array<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[f]);
    a
}

fn check(b: &[u8], t: MessageType) -> Result<(), MessageError> {
    if b.len() != t.wire_len() {
        return Err(MessageError::Length);
    }
    if b[field::TYPE] != t as u8 {
        return Err(MessageError::Type);
    }
    if b[field::RESERVED] != [0, 0, 0] {
        return Err(MessageError::Reserved);
    }
    Ok(())
}

/// Writes the type byte and zero reserved bytes.
fn set_header(b: &mut [u8], t: MessageType) {
    b[field::TYPE] = t as u8;
    b[field::RESERVED].fill(0);
}

macro_rules! view {
    ($name:ident, $t:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Checks the exact length, the type byte and the reserved bytes.
            pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
                check(buffer.as_ref(), $t)?;
                Ok(Self { buffer })
            }
            /// The underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
            /// The message's bytes.
            pub fn bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// A view over `buffer` (of the message's exact length) with the header written;
            /// the other fields are left as they are.
            pub fn new_emit(mut buffer: T) -> Result<Self, MessageError> {
                let b = buffer.as_mut();
                if b.len() != $t.wire_len() {
                    return Err(MessageError::Length);
                }
                set_header(b, $t);
                Ok(Self { buffer })
            }
            /// The message's bytes, mutable.
            pub fn bytes_mut(&mut self) -> &mut [u8] {
                self.buffer.as_mut()
            }
        }
    };
}

view!(Init, MessageType::Init, "A handshake initiation.");
view!(Response, MessageType::Response, "A handshake response.");
view!(CookieReply, MessageType::CookieReply, "A cookie reply.");

impl<T: AsRef<[u8]>> Init<T> {
    /// The initiator's index: the receiver index of packets it will be sent under this key.
    pub fn sender(&self) -> u32 {
        read_u32(self.bytes(), field::INIT_SENDER)
    }
    /// Noise message 1.
    pub fn noise(&self) -> &[u8] {
        &self.bytes()[field::INIT_NOISE]
    }
    /// mac1.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        array(self.bytes(), field::INIT_MAC1)
    }
    /// mac2 (zero when the initiator holds no cookie).
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        array(self.bytes(), field::INIT_MAC2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Init<T> {
    /// Sets the sender index.
    pub fn set_sender(&mut self, v: u32) {
        write_u32(self.bytes_mut(), field::INIT_SENDER, v);
    }
    /// Noise message 1, mutable.
    pub fn noise_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::INIT_NOISE]
    }
}

impl<T: AsRef<[u8]>> Response<T> {
    /// The responder's index.
    pub fn sender(&self) -> u32 {
        read_u32(self.bytes(), field::RESP_SENDER)
    }
    /// The initiator's index, from the initiation answered.
    pub fn receiver(&self) -> u32 {
        read_u32(self.bytes(), field::RESP_RECEIVER)
    }
    /// Noise message 2.
    pub fn noise(&self) -> &[u8] {
        &self.bytes()[field::RESP_NOISE]
    }
    /// mac1.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        array(self.bytes(), field::RESP_MAC1)
    }
    /// mac2.
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        array(self.bytes(), field::RESP_MAC2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Response<T> {
    /// Sets the sender index.
    pub fn set_sender(&mut self, v: u32) {
        write_u32(self.bytes_mut(), field::RESP_SENDER, v);
    }
    /// Sets the receiver index.
    pub fn set_receiver(&mut self, v: u32) {
        write_u32(self.bytes_mut(), field::RESP_RECEIVER, v);
    }
    /// Noise message 2, mutable.
    pub fn noise_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::RESP_NOISE]
    }
}

impl<T: AsRef<[u8]>> CookieReply<T> {
    /// The sender index of the message answered.
    pub fn receiver(&self) -> u32 {
        read_u32(self.bytes(), field::COOKIE_RECEIVER)
    }
    /// The nonce.
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        array(self.bytes(), field::COOKIE_NONCE)
    }
    /// The encrypted cookie and its tag.
    pub fn sealed_cookie(&self) -> [u8; SEALED_COOKIE_LEN] {
        array(self.bytes(), field::COOKIE_SEALED)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CookieReply<T> {
    /// Sets the receiver index.
    pub fn set_receiver(&mut self, v: u32) {
        write_u32(self.bytes_mut(), field::COOKIE_RECEIVER, v);
    }
    /// Sets the nonce.
    pub fn set_nonce(&mut self, v: &[u8; NONCE_LEN]) {
        self.bytes_mut()[field::COOKIE_NONCE].copy_from_slice(v);
    }
    /// Sets the encrypted cookie and its tag.
    pub fn set_sealed_cookie(&mut self, v: &[u8; SEALED_COOKIE_LEN]) {
        self.bytes_mut()[field::COOKIE_SEALED].copy_from_slice(v);
    }
}

/// The bytes mac1 covers and where mac1 / mac2 sit, for a message that carries MACs
/// (initiation or response): `None` for anything else.
pub fn mac_fields(bytes: &[u8]) -> Option<(Field, Field)> {
    match MessageType::from_u8(*bytes.first()?)? {
        MessageType::Init if bytes.len() == INIT_LEN => Some((field::INIT_MAC1, field::INIT_MAC2)),
        MessageType::Response if bytes.len() == RESPONSE_LEN => {
            Some((field::RESP_MAC1, field::RESP_MAC2))
        }
        _ => None,
    }
}

/// A message of up to [`MAX_LEN`] bytes, owned (what the handshake emits; no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageBuf {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl core::fmt::Debug for MessageBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = self
            .as_bytes()
            .first()
            .copied()
            .and_then(MessageType::from_u8);
        write!(f, "MessageBuf({t:?}, {} bytes)", self.len)
    }
}

impl MessageBuf {
    /// `len` zero bytes (at most [`MAX_LEN`]).
    pub fn zeroed(len: usize) -> Self {
        Self {
            bytes: [0; MAX_LEN],
            len: u8::try_from(len.min(MAX_LEN)).unwrap_or(u8::MAX),
        }
    }
    /// The message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// The message, mutable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.bytes[..usize::from(self.len)]
    }
    /// Its type (from the first byte).
    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_u8(*self.as_bytes().first()?)
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Never true for an emitted message.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Fuzz entry point (for a cargo-fuzz target and the property test): parses `data` as each
/// message, touches every getter, and checks that re-emitting the fields gives back the bytes.
pub fn fuzz_handshake(data: &[u8]) {
    black_box(mac_fields(data));
    if let Ok(m) = Init::new_checked(data) {
        let mut out = [0u8; INIT_LEN];
        let mut e = Init::new_emit(&mut out[..]).expect("exact length");
        e.set_sender(m.sender());
        e.noise_mut().copy_from_slice(m.noise());
        e.bytes_mut()[field::INIT_MAC1].copy_from_slice(&m.mac1());
        e.bytes_mut()[field::INIT_MAC2].copy_from_slice(&m.mac2());
        assert_eq!(&out[..], data);
        assert!(mac_fields(data).is_some());
    }
    if let Ok(m) = Response::new_checked(data) {
        let mut out = [0u8; RESPONSE_LEN];
        let mut e = Response::new_emit(&mut out[..]).expect("exact length");
        e.set_sender(m.sender());
        e.set_receiver(m.receiver());
        e.noise_mut().copy_from_slice(m.noise());
        e.bytes_mut()[field::RESP_MAC1].copy_from_slice(&m.mac1());
        e.bytes_mut()[field::RESP_MAC2].copy_from_slice(&m.mac2());
        assert_eq!(&out[..], data);
        assert!(mac_fields(data).is_some());
    }
    if let Ok(m) = CookieReply::new_checked(data) {
        let mut out = [0u8; COOKIE_REPLY_LEN];
        let mut e = CookieReply::new_emit(&mut out[..]).expect("exact length");
        e.set_receiver(m.receiver());
        e.set_nonce(&m.nonce());
        e.set_sealed_cookie(&m.sealed_cookie());
        assert_eq!(&out[..], data);
        assert!(mac_fields(data).is_none());
    }
    // The MAC checks and the cookie opening run on anything the views accept.
    super::cookie::fuzz_macs(data);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn layout_adds_up() {
        assert_eq!(4 + 4 + NOISE_INIT_LEN + 2 * MAC_LEN, INIT_LEN);
        assert_eq!(4 + 8 + NOISE_RESPONSE_LEN + 2 * MAC_LEN, RESPONSE_LEN);
        assert_eq!(4 + 4 + NONCE_LEN + SEALED_COOKIE_LEN, COOKIE_REPLY_LEN);
        assert_eq!(field::INIT_NOISE.len(), NOISE_INIT_LEN);
        assert_eq!(field::RESP_NOISE.len(), NOISE_RESPONSE_LEN);
        assert_eq!(field::INIT_MAC2.end, INIT_LEN);
        assert_eq!(field::RESP_MAC2.end, RESPONSE_LEN);
        assert_eq!(field::COOKIE_SEALED.end, COOKIE_REPLY_LEN);
        // Every answer is smaller than the message it answers.
        const { assert!(RESPONSE_LEN < INIT_LEN && COOKIE_REPLY_LEN < RESPONSE_LEN) };
    }

    #[test]
    fn emit_and_parse() {
        let mut b = [0xAAu8; INIT_LEN];
        let mut m = Init::new_emit(&mut b[..]).unwrap();
        m.set_sender(0x0102_0304);
        m.noise_mut().fill(7);
        let m = Init::new_checked(&b[..]).unwrap();
        assert_eq!(m.sender(), 0x0102_0304);
        assert_eq!(m.noise(), &[7u8; NOISE_INIT_LEN][..]);
        assert_eq!(m.mac1(), [0xAA; 16]);
        assert_eq!(&b[..8], &[4, 0, 0, 0, 1, 2, 3, 4]);

        let mut b = [0u8; RESPONSE_LEN];
        let mut m = Response::new_emit(&mut b[..]).unwrap();
        m.set_sender(9);
        m.set_receiver(10);
        let m = Response::new_checked(&b[..]).unwrap();
        assert_eq!((m.sender(), m.receiver()), (9, 10));

        let mut b = [0u8; COOKIE_REPLY_LEN];
        let mut m = CookieReply::new_emit(&mut b[..]).unwrap();
        m.set_receiver(11);
        m.set_nonce(&[3; 24]);
        m.set_sealed_cookie(&[5; 32]);
        let m = CookieReply::new_checked(&b[..]).unwrap();
        assert_eq!(
            (m.receiver(), m.nonce(), m.sealed_cookie()),
            (11, [3; 24], [5; 32])
        );
    }

    #[test]
    fn refuses_wrong_length_type_and_reserved() {
        let mut b = [0u8; INIT_LEN + 1];
        b[0] = 4;
        assert_eq!(Init::new_checked(&b[..]).unwrap_err(), MessageError::Length);
        assert_eq!(
            Init::new_checked(&b[..INIT_LEN - 1]).unwrap_err(),
            MessageError::Length
        );
        assert!(Init::new_checked(&b[..INIT_LEN]).is_ok());
        b[0] = 5;
        assert_eq!(
            Init::new_checked(&b[..INIT_LEN]).unwrap_err(),
            MessageError::Type
        );
        b[0] = 4;
        b[2] = 1;
        assert_eq!(
            Init::new_checked(&b[..INIT_LEN]).unwrap_err(),
            MessageError::Reserved
        );
        assert_eq!(
            Response::new_checked(&[][..]).unwrap_err(),
            MessageError::Length
        );
        assert!(Init::new_emit(&mut [0u8; 3][..]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_handshake(&data);
        }

        #[test]
        fn well_formed_headers_roundtrip(t in 4u8..=6, body in proptest::collection::vec(any::<u8>(), 148)) {
            let ty = MessageType::from_u8(t).unwrap();
            let mut b = body;
            b.truncate(ty.wire_len());
            b[0] = t;
            b[1..4].fill(0);
            fuzz_handshake(&b);
            let ok = match ty {
                MessageType::Init => Init::new_checked(&b[..]).is_ok(),
                MessageType::Response => Response::new_checked(&b[..]).is_ok(),
                MessageType::CookieReply => CookieReply::new_checked(&b[..]).is_ok(),
            };
            prop_assert!(ok);
        }
    }
}
