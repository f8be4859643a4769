//! Running Rust code inside a namespace: a fresh thread that `setns()`s
//! into it. The network namespace is per-thread on Linux, so only that
//! thread (and threads it spawns) sees the namespace's interfaces, routes
//! and sockets; the calling thread is untouched.
//!
//! Caveats for code run this way:
//! * sockets, AF_XDP/XDP, netlink, `ioctl`s, `if_nametoindex` and
//!   `/proc/sys/net` follow the thread's namespace;
//! * `/sys/class/net` does NOT (sysfs is tied to the mount namespace, which
//!   is unchanged): look interfaces up through netlink or ioctls instead;
//! * threads spawned from inside inherit the namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

use super::Netns;
use crate::error::{Error, Result};

fn enter(file: &File, name: &str) -> Result<()> {
    // SAFETY: setns(2) on a valid open fd; it only changes this thread's
    // network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::last_os(format!("setns into {name}")))
    }
}

impl Netns {
    fn open(&self) -> Result<File> {
        File::open(self.path()).map_err(|source| Error::Io {
            what: format!("open {}", self.path().display()),
            source,
        })
    }

    /// Runs `f` on a new thread whose network namespace is this one and
    /// returns its join handle. The thread's result is `Err` if `setns`
    /// failed (then `f` never ran). The namespace outliving the thread is
    /// the caller's business: if the guard is dropped first, the thread
    /// keeps the (now unnamed) namespace alive until it ends.
    pub fn enter_thread<T, F>(&self, f: F) -> Result<JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file = self.open()?;
        let name = self.name().to_owned();
        std::thread::Builder::new()
            .name(format!("ns:{name}"))
            .spawn(move || {
                enter(&file, &name)?;
                drop(file);
                Ok(f())
            })
            .map_err(|source| Error::Io {
                what: "spawning namespace thread".into(),
                source,
            })
    }

    /// Runs `f` inside the namespace on a scoped thread and waits for it;
    /// `f` may borrow from the caller. A panic in `f` is resumed here.
    pub fn run_in<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let file = self.open()?;
        let name = self.name();
        std::thread::scope(|s| {
            let h = std::thread::Builder::new()
                .name(format!("ns:{name}"))
                .spawn_scoped(s, move || {
                    enter(&file, name)?;
                    drop(file);
                    Ok(f())
                })
                .map_err(|source| Error::Io {
                    what: "spawning namespace thread".into(),
                    source,
                })?;
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}
