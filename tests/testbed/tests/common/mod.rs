//! Shared helpers for the root-only testbed tests.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use mongate_testbed::{Netns, have_program, list_with_prefix, unavailable_reason};

/// Writes a `SKIP:` line straight to stderr: the test harness captures
/// `println!`/`eprintln!` of passing tests, not direct writes, so the line
/// is visible in every `cargo test` run.
pub fn say_skip(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {reason}");
}

/// Prints `SKIP: <reason>` and returns true when namespace tests cannot run.
pub fn skip(test: &str) -> bool {
    match unavailable_reason() {
        Some(r) => {
            say_skip(test, &r);
            true
        }
        None => false,
    }
}

/// Prints `SKIP: ...` and returns true when `ping` is missing.
pub fn skip_no_ping(test: &str) -> bool {
    if have_program("ping") {
        false
    } else {
        say_skip(test, "`ping` (iputils-ping) not found on PATH");
        true
    }
}

/// `ping -c count -W 1 -i 0.2 dst` from inside `ns`; true if it got replies.
pub fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    let c = count.to_string();
    let out = ns
        .exec_unchecked(&["ping", "-n", "-q", "-c", &c, "-W", "1", "-i", "0.2", dst])
        .expect("run ping");
    out.status.success()
}

/// Namespaces of this process with `prefix` (`<prefix><pid>-...`).
pub fn ours(prefix: &str) -> Vec<String> {
    list_with_prefix(&format!("{prefix}{}-", std::process::id())).expect("list netns")
}

/// Sends 3 UDP datagrams from a socket inside `from` to `dst`, received by
/// a socket bound to `dst` inside `to`. True if one arrived within 1 s.
pub fn udp_reach(from: &Netns, to: &Netns, dst: SocketAddr) -> bool {
    let (bound_tx, bound_rx) = mpsc::channel();
    let rx = to
        .enter_thread(move || {
            let sock = UdpSocket::bind(dst).expect("bind in sink ns");
            sock.set_read_timeout(Some(Duration::from_secs(1)))
                .expect("timeout");
            bound_tx.send(()).expect("signal bound");
            let mut buf = [0u8; 64];
            matches!(sock.recv(&mut buf), Ok(n) if &buf[..n] == b"mongate-probe")
        })
        .expect("enter sink ns");
    bound_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver bound");
    from.run_in(|| {
        let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .expect("addr");
        let sock = UdpSocket::bind(any).expect("bind sender");
        for _ in 0..3 {
            // Errors (unreachable, ENOBUFS under a blackhole) just mean "not delivered".
            let _ = sock.send_to(b"mongate-probe", dst);
        }
    })
    .expect("enter gen ns");
    rx.join().expect("receiver thread").expect("setns")
}
