//! What the two counter files (`.stats`, `.flows`) share: a 64-byte header
//! (magic, workers, pid, flows), created by the dataplane (mode 0640) and
//! published by its magic, opened read-only and validated by readers, in one
//! place. Any bytes in a file give a reader an error or numbers, never a
//! fault: its length is checked before mapping (and only its owner can
//! truncate it, see [`crate::sys::shm`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{MAX_WORKERS, StatsError};
use crate::sys::shm::{Access, COUNTERS_MODE, ShmFile, ShmShared};

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    workers: AtomicU64,
    pid: AtomicU64,
    /// Flows described (0 in a `.stats` file).
    flows: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is valid.
unsafe impl ShmShared for Header {}

/// Bytes before a file's own contents (its header).
pub(crate) const HEADER_BYTES: usize = std::mem::size_of::<Header>();

/// One kind of counters file.
pub(crate) struct Kind {
    /// Magic number, stored last when the file is ready.
    pub magic: u64,
    /// Most flows the file may describe.
    pub max_flows: usize,
    /// File length for `(workers, flows)`.
    pub len: fn(usize, usize) -> usize,
}

/// A mapped counters file of some [`Kind`], its geometry validated.
pub(crate) struct CountersFile {
    shm: ShmFile,
    workers: usize,
    flows: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StatsError + '_ {
    move |err| StatsError::Io {
        path: path.to_path_buf(),
        err,
    }
}

impl CountersFile {
    /// Creates (truncating) the file of `kind` for `workers` workers and
    /// `flows` flows, plus `extra` bytes after what `kind` describes; `fill`
    /// writes what must be there before readers accept the file, then the
    /// magic is published. The file is removed when the value drops.
    pub(crate) fn create(
        path: &Path,
        kind: &Kind,
        (workers, flows, extra): (usize, usize, usize),
        fill: impl FnOnce(&mut ShmFile),
    ) -> Result<Self, StatsError> {
        if workers > MAX_WORKERS || flows > kind.max_flows {
            return Err(StatsError::TooMany);
        }
        let len = (kind.len)(workers, flows)
            .checked_add(extra)
            .ok_or(StatsError::TooMany)?;
        let mut shm = ShmFile::create(path, len, COUNTERS_MODE).map_err(io(path))?;
        fill(&mut shm);
        let h = shm
            .get::<Header>(0)
            .ok_or_else(|| StatsError::Magic(path.to_path_buf()))?;
        h.workers.store(workers as u64, Ordering::Relaxed);
        h.flows.store(flows as u64, Ordering::Relaxed);
        h.pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        h.magic.store(kind.magic, Ordering::Release);
        Ok(Self {
            shm,
            workers,
            flows,
        })
    }

    /// Opens an existing file of `kind` read-only (`O_RDONLY`, `PROT_READ`):
    /// refused unless its magic is `kind`'s and it is as long as its
    /// geometry says.
    pub(crate) fn open(path: &Path, kind: &Kind) -> Result<Self, StatsError> {
        let bad = || StatsError::Magic(path.to_path_buf());
        let (f, flen) = crate::sys::shm::open_existing(path, Access::ReadOnly).map_err(io(path))?;
        let flen = usize::try_from(flen).unwrap_or(0);
        if flen < HEADER_BYTES {
            return Err(bad());
        }
        let shm = ShmFile::map(&f, flen, path, Access::ReadOnly).map_err(io(path))?;
        let h = shm.get::<Header>(0).ok_or_else(bad)?;
        let magic = h.magic.load(Ordering::Acquire);
        if magic != kind.magic {
            return Err(version_error(path, magic, kind.magic).unwrap_or_else(bad));
        }
        let workers = usize::try_from(h.workers.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let flows = usize::try_from(h.flows.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if workers > MAX_WORKERS || flows > kind.max_flows || (kind.len)(workers, flows) > flen {
            return Err(bad());
        }
        Ok(Self {
            shm,
            workers,
            flows,
        })
    }

    /// Workers described.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Flows described.
    pub(crate) fn flows(&self) -> usize {
        self.flows
    }

    /// The pid of the process that created the file.
    pub(crate) fn pid(&self) -> u64 {
        self.shm
            .get::<Header>(0)
            .map_or(0, |h| h.pid.load(Ordering::Relaxed))
    }

    /// The mapped file.
    pub(crate) fn shm(&self) -> &ShmFile {
        &self.shm
    }
}

/// The error for a file of the same family (its magic's first six bytes,
/// e.g. `MGFLOW`) in another format version: the dataplane and the reader
/// come from different builds. `None` for anything else.
fn version_error(path: &Path, found: u64, want: u64) -> Option<StatsError> {
    crate::sys::shm::other_version(found, want).map(|(found, want)| StatsError::Version {
        path: path.to_path_buf(),
        found,
        want,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Kind = Kind {
        magic: u64::from_le_bytes(*b"MGTEST01"),
        max_flows: 8,
        len: |workers, flows| HEADER_BYTES + workers * flows * 64,
    };

    #[test]
    fn create_publish_open_and_refuse() {
        let dir = crate::sys::shm::TestDir::new("counters");
        let path = dir.file("x.test");
        assert!(matches!(
            CountersFile::create(&path, &TEST, (MAX_WORKERS + 1, 1, 0), |_| {}),
            Err(StatsError::TooMany)
        ));
        assert!(matches!(
            CountersFile::create(&path, &TEST, (1, 9, 0), |_| {}),
            Err(StatsError::TooMany)
        ));
        let w = CountersFile::create(&path, &TEST, (2, 3, 0), |shm| {
            assert!(shm.write(HEADER_BYTES, b"x"));
        })
        .unwrap();
        let r = CountersFile::open(&path, &TEST).unwrap();
        assert_eq!((r.workers(), r.flows()), (2, 3));
        let mut b = [0u8; 1];
        assert!(r.shm().read(HEADER_BYTES, &mut b));
        assert_eq!(&b, b"x");
        // Another kind's magic is refused.
        let other = Kind { magic: 1, ..TEST };
        assert!(matches!(
            CountersFile::open(&path, &other),
            Err(StatsError::Magic(_))
        ));
        // The same family in another version: says so, with both versions.
        let newer = Kind {
            magic: u64::from_le_bytes(*b"MGTEST02"),
            ..TEST
        };
        let e = CountersFile::open(&path, &newer).err().expect("refused");
        assert!(matches!(e, StatsError::Version { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("MGTEST01") && msg.contains("MGTEST02"),
            "{msg}"
        );
        drop(r);
        // A file shorter than its geometry says is refused.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len((HEADER_BYTES + 64) as u64).unwrap();
        assert!(matches!(
            CountersFile::open(&path, &TEST),
            Err(StatsError::Magic(_))
        ));
        drop(w);
        assert!(!path.exists());
        assert!(matches!(
            CountersFile::open(&path, &TEST),
            Err(StatsError::Io { .. })
        ));
    }
}
