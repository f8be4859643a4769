//! The gateway's static X25519 key pair: the private key file (base64 of 32 bytes, one line,
//! mode 0600 or 0400), its generation and the public key derived from it.
//!
//! A key file readable or writable by anyone but its owner, a symlink or anything but a regular
//! file is refused before it is read (the dataplane's [`keyfile::open_private_key_file`], which
//! both processes run). [`keygen`] creates the file with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode
//! 0600, so it never follows a planted symlink nor overwrites an existing key. Keys are written
//! and read as the configuration's public keys are ([`encode_key`], [`decode_key`]).

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mongate_dataplane::config::{decode_key, encode_key};
use mongate_dataplane::sys::keyfile::{self, KeyFileError};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver as _, DefaultResolver};
use zeroize::Zeroize as _;

/// Length of X25519 keys.
pub const KEY_LEN: usize = 32;

/// Why a key could not be loaded, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the file failed.
    #[error("{}: {err}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        err: std::io::Error,
    },
    /// The file is not safe to hold a private key.
    #[error("{}: {why}", path.display())]
    Unsafe {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The text is not the base64 of 32 bytes.
    #[error("{what}: not a key: {why}")]
    Format {
        /// Where the text came from.
        what: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A public key (32 bytes; written as base64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_key(s, "public key").map(Self)
    }
}

/// A static private key. Wiped from memory on drop; its `Debug` shows the public key only.
pub struct StaticSecret {
    bytes: [u8; KEY_LEN],
    public: PublicKey,
}

impl StaticSecret {
    /// The key of these 32 bytes (X25519 clamps them when it uses them).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            public: PublicKey(public_key_of(&bytes)),
            bytes,
        }
    }
    /// The private key bytes (for the handshake).
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }
}

impl Drop for StaticSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticSecret(public {})", self.public)
    }
}

/// The X25519 public key of a private key.
pub fn public_key_of(secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver has Curve25519");
    dh.set(secret);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(dh.pubkey());
    out
}

/// 32 bytes from their base64 ([`decode_key`], the configuration's form); `what` names the
/// text in errors.
fn parse_key(text: &str, what: &str) -> Result<[u8; KEY_LEN], KeyError> {
    decode_key(text).map_err(|why| KeyError::Format {
        what: what.to_owned(),
        why,
    })
}

fn key_file_error(path: &Path, e: KeyFileError) -> KeyError {
    match e {
        KeyFileError::Io(kind) => KeyError::Io {
            path: path.to_owned(),
            err: kind.into(),
        },
        e => KeyError::Unsafe {
            path: path.to_owned(),
            why: e.to_string(),
        },
    }
}

/// Loads the private key at `path`, opened by the dataplane's
/// [`keyfile::open_private_key_file`] (a regular file only its owner may access, checked on the
/// path and again on the file opened without following a symlink).
pub fn load(path: &Path) -> Result<StaticSecret, KeyError> {
    use std::io::Read as _;
    let mut f = keyfile::open_private_key_file(path).map_err(|e| key_file_error(path, e))?;
    let mut text = String::new();
    let r = f.read_to_string(&mut text).map_err(|err| KeyError::Io {
        path: path.to_owned(),
        err,
    });
    let r = r.and_then(|_| parse_key(&text, &path.display().to_string()));
    text.zeroize();
    r.map(StaticSecret::from_bytes)
}

/// Writes a new private key (from the OS random generator) to `path`, which must not exist,
/// with mode 0600; returns its public key.
pub fn keygen(path: &Path) -> Result<PublicKey, KeyError> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Io {
        path: path.to_owned(),
        err: std::io::Error::other(format!("random generator: {e}")),
    })?;
    let r = write_key(path, bytes);
    bytes.zeroize();
    r
}

/// Writes the private key `bytes` (clamped for X25519, as WireGuard does) to `path`, which
/// must not exist, with mode 0600; returns its public key.
pub fn write_key(path: &Path, mut bytes: [u8; KEY_LEN]) -> Result<PublicKey, KeyError> {
    bytes[0] &= 248;
    bytes[31] = (bytes[31] & 127) | 64;
    let secret = StaticSecret::from_bytes(bytes);
    bytes.zeroize();
    let io = |err| KeyError::Io {
        path: path.to_owned(),
        err,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    let mut line = encode_key(secret.bytes());
    line.push('\n');
    let r = f.write_all(line.as_bytes()).and_then(|()| f.sync_all());
    line.zeroize();
    r.map_err(io)?;
    Ok(secret.public_key())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mongate-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn public_key_matches_rfc7748() {
        // RFC 7748 section 6.1, Alice.
        let sk = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pk = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(public_key_of(&sk), pk);
        assert_eq!(StaticSecret::from_bytes(sk).public_key(), PublicKey(pk));
    }

    #[test]
    fn keygen_writes_0600_and_load_reads_it_back() {
        let d = tmpdir("gen");
        let p = d.join("site.key");
        let public = keygen(&p).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let s = load(&p).unwrap();
        assert_eq!(s.public_key(), public);
        // The printed form parses back.
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        // Never overwrites.
        assert!(matches!(keygen(&p), Err(KeyError::Io { .. })));
        assert_eq!(load(&p).unwrap().public_key(), public);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn keygen_refuses_a_symlink() {
        let d = tmpdir("link");
        let target = d.join("victim");
        std::fs::write(&target, "precious").unwrap();
        let link = d.join("site.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(keygen(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        // Nor is a key loaded through one.
        let real = d.join("real.key");
        keygen(&real).unwrap();
        let link2 = d.join("link2.key");
        std::os::unix::fs::symlink(&real, &link2).unwrap();
        assert!(matches!(load(&link2), Err(KeyError::Unsafe { .. })));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn load_refuses_a_file_others_can_read() {
        let d = tmpdir("mode");
        let p = d.join("site.key");
        keygen(&p).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&p).unwrap_err();
            assert!(matches!(e, KeyError::Unsafe { .. }), "mode {mode:o}: {e}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load(&p).is_ok());
        // A directory is not a key file.
        assert!(load(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_text_is_a_format_error() {
        let d = tmpdir("fmt");
        for (i, text) in [
            "",
            "not base64!",
            "AAAA",
            // 31 and 33 bytes.
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ==",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
        ]
        .iter()
        .enumerate()
        {
            let p = d.join(format!("k{i}"));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            assert!(matches!(load(&p), Err(KeyError::Format { .. })), "{text:?}");
        }
        assert!("x".parse::<PublicKey>().is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn secret_debug_hides_the_key() {
        let s = StaticSecret::from_bytes([7u8; 32]);
        let dbg = format!("{s:?}");
        assert!(dbg.contains(&s.public_key().to_string()));
        assert!(!dbg.contains(&encode_key(&[7u8; 32])));
    }
}
