//! Private key files: both processes refuse to start with a key file that
//! others could read or swap. The dataplane only checks the file (it never
//! reads a static key); the control process opens it with
//! [`open_private_key_file`] and reads the key from the returned handle.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a private key file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be examined or opened.
    #[error("cannot open: {0}")]
    Io(io::ErrorKind),
    /// The path is a symbolic link (it could be pointed elsewhere).
    #[error("is a symbolic link; give the key file itself")]
    Symlink,
    /// Not a regular file (a directory, device, FIFO or socket).
    #[error("is not a regular file")]
    NotRegular,
    /// Group or others may read or write it (`mode & 0o077 != 0`).
    #[error("mode {0:04o} lets group or others access it; chmod 600")]
    Permissive(u32),
}

fn check_metadata(m: &Metadata) -> Result<(), KeyFileError> {
    let t = m.file_type();
    if t.is_symlink() {
        return Err(KeyFileError::Symlink);
    }
    if !t.is_file() {
        return Err(KeyFileError::NotRegular);
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissive(mode));
    }
    Ok(())
}

/// Checks that `path` names a regular file (not a symbolic link) that only
/// its owner may access (mode 0600, 0400 or stricter).
pub fn check_private_key_file(path: &Path) -> Result<(), KeyFileError> {
    open_private_key_file(path).map(drop)
}

/// Opens `path` for reading after the checks of [`check_private_key_file`]:
/// the link is examined first, the file is opened without following a
/// symbolic link and the opened file is checked again (so a file swapped in
/// between is refused too).
pub fn open_private_key_file(path: &Path) -> Result<File, KeyFileError> {
    let io = |e: io::Error| KeyFileError::Io(e.kind());
    check_metadata(&std::fs::symlink_metadata(path).map_err(io)?)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            // O_NOFOLLOW on a link fails with ELOOP.
            if e.raw_os_error() == Some(libc::ELOOP) {
                KeyFileError::Symlink
            } else {
                io(e)
            }
        })?;
    check_metadata(&f.metadata().map_err(io)?)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A fresh directory for one test (removed by the test).
    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mongate-keyfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn key_file(d: &Path, mode: u32) -> PathBuf {
        let p = d.join(format!("k{mode:o}"));
        let mut f = File::create(&p).unwrap();
        f.write_all(b"secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn modes() {
        let d = dir("modes");
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o644, false),
            (0o640, false),
            (0o604, false),
            (0o620, false),
        ] {
            let p = key_file(&d, mode);
            let r = check_private_key_file(&p);
            if ok {
                assert_eq!(r, Ok(()), "mode {mode:o}");
                let mut s = String::new();
                open_private_key_file(&p)
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                assert_eq!(s, "secret\n");
            } else {
                assert_eq!(r, Err(KeyFileError::Permissive(mode)), "mode {mode:o}");
            }
        }
        let e = check_private_key_file(&key_file(&d, 0o644)).unwrap_err();
        assert!(e.to_string().contains("0644"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlink_directory_and_missing() {
        let d = dir("links");
        let target = key_file(&d, 0o600);
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(check_private_key_file(&link), Err(KeyFileError::Symlink));
        assert_eq!(check_private_key_file(&d), Err(KeyFileError::NotRegular));
        assert_eq!(
            check_private_key_file(&d.join("absent")),
            Err(KeyFileError::Io(io::ErrorKind::NotFound))
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
