//! Whether the workspace's binaries that tests run are older than their
//! sources.
//!
//! `cargo test -p mongate` builds the root package's binary, not
//! `mongate-control` or `mongate-dataplane` of the other packages, and the
//! network tests run those from `target/<profile>/`. After an edit in
//! `control/` a stale control binary made a network test fail in ways that
//! named nothing (session 28). The tests now check first and say what to
//! build.
//!
//! The rule is cargo's own (its fingerprints of path packages are mtimes):
//! a binary is stale when a file it is built from is newer than the
//! binary. "Built from" is the binary's package and the path packages it
//! depends on (`src/`, `build.rs`, `Cargo.toml` of each) and the workspace's
//! `Cargo.lock`. A wider set would name binaries that cargo would not
//! relink, so they would stay "stale" after a build.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace binaries the network tests run, each with the package
/// directories (relative to the workspace root) it is built from.
pub const WORKSPACE_BINARIES: &[(&str, &[&str])] = &[
    ("mongate-control", &["control", "dataplane", "hwconfig"]),
    ("mongate-dataplane", &["dataplane", "hwconfig"]),
    (
        "mongate-bench",
        &["bench", "dataplane", "hwconfig", "tests/testbed"],
    ),
];

/// One binary that is missing or older than a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The binary's path.
    pub binary: PathBuf,
    /// The newest source newer than the binary (`None`: the binary is
    /// missing).
    pub newer: Option<PathBuf>,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.newer {
            None => write!(f, "{} is missing", self.binary.display()),
            Some(src) => write!(
                f,
                "{} is older than {}",
                self.binary.display(),
                src.display()
            ),
        }
    }
}

/// The binaries of `table` in `bin_dir` that are missing or older than one
/// of their sources under `root`.
pub fn stale_binaries(bin_dir: &Path, root: &Path, table: &[(&str, &[&str])]) -> Vec<Stale> {
    let mut out = Vec::new();
    for (name, packages) in table {
        let binary = bin_dir.join(name);
        let Some(built) = modified(&binary) else {
            out.push(Stale {
                binary,
                newer: None,
            });
            continue;
        };
        let mut newest: Option<(SystemTime, PathBuf)> = None;
        let mut consider = |p: PathBuf| {
            if let Some(t) = modified(&p)
                && t > built
                && newest.as_ref().is_none_or(|(n, _)| t > *n)
            {
                newest = Some((t, p));
            }
        };
        consider(root.join("Cargo.lock"));
        for pkg in *packages {
            let dir = root.join(pkg);
            consider(dir.join("Cargo.toml"));
            consider(dir.join("build.rs"));
            walk(&dir.join("src"), &mut consider);
        }
        if let Some((_, src)) = newest {
            out.push(Stale {
                binary,
                newer: Some(src),
            });
        }
    }
    out
}

/// The network tests' check: `Err` with what to build when one of
/// [`WORKSPACE_BINARIES`] next to `test_binary` (a `CARGO_BIN_EXE_*`
/// path) is missing or stale.
pub fn check_workspace_binaries(test_binary: &Path, root: &Path) -> Result<(), String> {
    let Some(dir) = test_binary.parent() else {
        return Ok(());
    };
    let stale = stale_binaries(dir, root, WORKSPACE_BINARIES);
    if stale.is_empty() {
        return Ok(());
    }
    let profile = if dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    let list: Vec<String> = stale.iter().map(ToString::to_string).collect();
    Err(format!(
        "the network tests run the workspace's binaries, and {}; build them first: \
         cargo build{profile} --workspace",
        list.join("; ")
    ))
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Every file under `dir` (symbolic links not followed).
fn walk(dir: &Path, f: &mut impl FnMut(PathBuf)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(&e.path(), f);
        } else if kind.is_file() {
            f(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};
    use std::time::Duration;

    fn touch(p: &Path, t: SystemTime) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        let f = File::create(p).unwrap();
        f.set_modified(t).unwrap();
    }

    fn tree() -> (tempdir::Dir, SystemTime) {
        let d = tempdir::Dir::new();
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        let root = d.path();
        touch(&root.join("Cargo.lock"), t0);
        for pkg in ["control", "dataplane", "hwconfig", "bench", "tests/testbed"] {
            touch(&root.join(pkg).join("Cargo.toml"), t0);
            touch(&root.join(pkg).join("src/lib.rs"), t0);
        }
        touch(&root.join("dataplane/src/overlay/deep.rs"), t0);
        (d, t0)
    }

    const TABLE: &[(&str, &[&str])] = &[
        ("ctl", &["control", "dataplane", "hwconfig"]),
        ("dp", &["dataplane", "hwconfig"]),
    ];

    #[test]
    fn binaries_newer_than_their_sources_are_fresh() {
        let (d, t0) = tree();
        let bin = d.path().join("target/release");
        touch(&bin.join("ctl"), t0 + Duration::from_secs(60));
        touch(&bin.join("dp"), t0 + Duration::from_secs(60));
        assert!(stale_binaries(&bin, d.path(), TABLE).is_empty());
    }

    #[test]
    fn an_edit_in_a_dependency_makes_its_dependents_stale_and_no_other() {
        let (d, t0) = tree();
        let bin = d.path().join("target/release");
        touch(&bin.join("ctl"), t0 + Duration::from_secs(60));
        touch(&bin.join("dp"), t0 + Duration::from_secs(60));
        // An edit deep in control/src: only ctl is built from it.
        let edited = d.path().join("control/src/run/io.rs");
        touch(&edited, t0 + Duration::from_secs(120));
        let s = stale_binaries(&bin, d.path(), TABLE);
        assert_eq!(
            s,
            vec![Stale {
                binary: bin.join("ctl"),
                newer: Some(edited),
            }]
        );
        // One in dataplane/src: both, each naming the newest source.
        let deep = d.path().join("dataplane/src/overlay/deep.rs");
        touch(&deep, t0 + Duration::from_secs(180));
        let s = stale_binaries(&bin, d.path(), TABLE);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|x| x.newer.as_deref() == Some(deep.as_path())));
        // Files outside src/ (the package's tests, docs) do not count.
        let fresh = d.path().join("target/release2");
        touch(&fresh.join("ctl"), t0 + Duration::from_secs(240));
        touch(&fresh.join("dp"), t0 + Duration::from_secs(240));
        touch(
            &d.path().join("control/tests/x.rs"),
            t0 + Duration::from_secs(300),
        );
        assert!(stale_binaries(&fresh, d.path(), TABLE).is_empty());
    }

    #[test]
    fn a_missing_binary_is_named_and_the_message_says_what_to_build() {
        let (d, t0) = tree();
        let bin = d.path().join("target/release");
        touch(&bin.join("mongate"), t0 + Duration::from_secs(60));
        let e = check_workspace_binaries(&bin.join("mongate"), d.path()).unwrap_err();
        assert!(e.contains("mongate-control is missing"), "{e}");
        assert!(e.contains("cargo build --release --workspace"), "{e}");
        let dbg = d.path().join("target/debug");
        touch(&dbg.join("mongate"), t0 + Duration::from_secs(60));
        let e = check_workspace_binaries(&dbg.join("mongate"), d.path()).unwrap_err();
        assert!(e.contains("cargo build --workspace"), "{e}");
    }

    /// A directory removed when dropped.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        static N: AtomicU32 = AtomicU32::new(0);

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "mongate-fresh-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }

            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
