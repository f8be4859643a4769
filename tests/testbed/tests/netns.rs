//! Namespace guard behaviour: creation, cleanup (also on panic), children,
//! entering from a thread, sweeping stale namespaces. Needs root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use mongate_testbed::link::{self, veth_pair};
use mongate_testbed::netns::pid_alive;
use mongate_testbed::{Netns, list_with_prefix, sweep_stale};

#[test]
fn netns_is_created_with_lo_up_and_removed_on_drop() {
    if common::skip("netns_is_created_with_lo_up_and_removed_on_drop") {
        return;
    }
    let ns = Netns::with_tag("mgtn-", "x").unwrap();
    let name = ns.name().to_owned();
    assert!(name.starts_with(&format!("mgtn-{}-", std::process::id())));
    assert_eq!(common::ours("mgtn-"), vec![name.clone()]);
    let lo = ns.ip(&["-o", "link", "show", "lo"]).unwrap();
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains("LOWER_UP"),
        "lo not up"
    );
    let err = ns.exec(&["ip", "link", "show", "nosuchdev"]).unwrap_err();
    assert!(
        err.to_string().contains("nosuchdev"),
        "error lacks stderr: {err}"
    );
    drop(ns);
    assert!(common::ours("mgtn-").is_empty());
}

#[test]
fn panic_inside_test_body_still_removes_namespaces() {
    if common::skip("panic_inside_test_body_still_removes_namespaces") {
        return;
    }
    let names = std::sync::Mutex::new(Vec::new());
    let r = std::panic::catch_unwind(|| {
        let a = Netns::new("mgtp-").unwrap();
        let b = Netns::new("mgtp-").unwrap();
        veth_pair(&a, "pa", &b, "pb", 1).unwrap();
        names
            .lock()
            .unwrap()
            .extend([a.name().to_owned(), b.name().to_owned()]);
        assert_eq!(common::ours("mgtp-").len(), 2);
        panic!("deliberate panic in test body");
    });
    assert!(r.is_err(), "closure should have panicked");
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2);
    let left = list_with_prefix("mgtp-").unwrap();
    assert!(
        names.iter().all(|n| !left.contains(n)),
        "left behind: {left:?}"
    );
}

#[test]
fn spawned_children_run_inside_and_die_with_the_namespace() {
    if common::skip("spawned_children_run_inside_and_die_with_the_namespace") {
        return;
    }
    let ns = Netns::new("mgtc-").unwrap();
    let ns_ino = std::fs::metadata(ns.path()).unwrap().ino();
    let mut cmd = Command::new("sleep");
    cmd.arg("30").stdout(Stdio::null());
    let child = ns.spawn(cmd).unwrap();
    let pid = child.pid();
    let child_ino = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(child_ino, ns_ino, "child not inside the namespace");
    // A second child that we let the handle go of: the namespace still owns it.
    let mut cmd2 = Command::new("sleep");
    cmd2.arg("30");
    let pid2 = ns.spawn(cmd2).unwrap().pid(); // handle dropped here: stopped at once
    assert!(!pid_alive(pid2), "dropped handle did not stop its child");
    assert!(child.try_wait().unwrap().is_none(), "sleep exited early");
    drop(ns);
    assert!(!pid_alive(pid), "child survived its namespace");
    assert!(
        child.try_wait().unwrap().is_none(),
        "slot must be empty once the namespace reaped it"
    );
}

/// A parent that takes SIGINT and SIGTERM with sigwait (the demo) blocks
/// them in its threads; its children must not inherit that: they start with
/// no signal blocked and stop on SIGTERM.
#[test]
fn children_of_a_thread_that_blocks_sigterm_still_stop_on_it() {
    if common::skip("children_of_a_thread_that_blocks_sigterm_still_stop_on_it") {
        return;
    }
    // In a thread of its own: the mask is per thread, the harness's stay as they are.
    std::thread::spawn(|| {
        // SAFETY: an all-zero sigset_t is valid input for sigemptyset; the
        // set lives on this stack; pthread_sigmask changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGINT);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()),
                0
            );
        }
        let ns = Netns::new("mgts-").unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30").stdout(Stdio::null());
        let child = ns.spawn(cmd).unwrap();
        let pid = child.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .expect("SigBlk line");
        assert_eq!(
            blocked, 0,
            "the child inherited a blocked mask: {blocked:#x}"
        );
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGTERM) };
        assert_eq!(rc, 0);
        let st = child
            .wait_timeout(std::time::Duration::from_secs(5))
            .unwrap()
            .expect("SIGTERM did not stop the child within 5 s");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGTERM), "{st:?}");
    })
    .join()
    .unwrap();
}

#[test]
fn threads_enter_the_namespace_and_the_caller_does_not() {
    if common::skip("threads_enter_the_namespace_and_the_caller_does_not") {
        return;
    }
    let a = Netns::new("mgte-").unwrap();
    let b = Netns::new("mgte-").unwrap();
    veth_pair(&a, "probe0", &b, "probe1", 1).unwrap();
    let idx = |name: &str| {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid NUL-terminated string; if_nametoindex only reads it.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    assert_ne!(a.run_in(|| idx("probe0")).unwrap(), 0);
    assert_eq!(a.run_in(|| idx("probe1")).unwrap(), 0);
    assert_eq!(
        idx("probe0"),
        0,
        "caller thread must stay in its own namespace"
    );
    let h = b.enter_thread(move || idx("probe1")).unwrap();
    assert_ne!(h.join().unwrap().unwrap(), 0);
    // Sysctls written from inside apply to the namespace only.
    link::enable_forwarding(&a).unwrap();
    assert_eq!(a.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(b.sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
}

#[test]
fn sweep_removes_dead_owners_namespaces_only() {
    if common::skip("sweep_removes_dead_owners_namespaces_only") {
        return;
    }
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    assert!(!pid_alive(dead_pid));
    let stale = format!("mgts-{dead_pid}-0");
    let out = Command::new("ip")
        .args(["netns", "add", &stale])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = Netns::new("mgts-").unwrap();
    let removed = sweep_stale("mgts-").unwrap();
    let left = list_with_prefix("mgts-").unwrap();
    assert!(removed >= 1);
    assert!(!left.contains(&stale), "stale namespace survived: {left:?}");
    assert!(
        left.contains(&live.name().to_owned()),
        "live namespace was swept"
    );
}
