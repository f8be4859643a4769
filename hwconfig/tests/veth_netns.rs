//! End-to-end test on a veth pair in a private network namespace (needs root).
//!
//! Creates netns `mgt-hw-<pid>-<n>`, a veth pair `a`/`b` with 2 rx/tx queues,
//! runs the `mongate-hwconfig` binary inside it (`ip netns exec`, which also
//! remounts /sys so sysfs shows the namespace's interfaces), and checks
//! discovery, planning and that `apply --apply` moves the channel count
//! 2 -> 1 -> 2. The namespace is deleted by a Drop guard even on failure.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use mongate_hwconfig::discover::{HostInfo, NicInfo};
use mongate_hwconfig::plan_from_toml;
use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_mongate-hwconfig");

struct Netns(String);

impl Netns {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mgt-hw-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        Self(name)
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, BIN])
            .args(args)
            .output()
            .expect("spawn ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: stdout={} stderr={}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Deserialize)]
struct Show {
    #[allow(dead_code)] // parsed to check the shape, not inspected
    host: HostInfo,
    interfaces: Vec<NicInfo>,
}

fn show(ns: &Netns, ifname: &str) -> NicInfo {
    let text = ok(ns.exec(&["show", ifname, "--json"]));
    let mut s: Show = serde_json::from_str(&text).expect("show --json parses");
    assert_eq!(s.interfaces.len(), 1);
    s.interfaces.remove(0)
}

fn rx_tx(n: &NicInfo) -> (u32, u32) {
    let c = n.channels.expect("veth reports channels");
    (c.rx, c.tx)
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP veth_netns: needs root (creates a network namespace)");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("SKIP veth_netns: `ip` (iproute2) not installed");
        return false;
    }
    true
}

#[test]
fn veth_discovery_plan_and_apply() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    run_ok(Command::new("ip").args([
        "-n",
        &ns.0,
        "link",
        "add",
        "name",
        "a",
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "b",
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
    ]));

    // discovery
    let a = show(&ns, "a");
    assert_eq!(a.driver.as_deref(), Some("veth"));
    let c = a.channels.expect("channels");
    assert_eq!(
        (c.max_rx, c.max_tx, c.rx, c.tx, c.combined),
        (2, 2, 2, 2, 0)
    );
    assert_eq!((a.sysfs_rx_queues, a.sysfs_tx_queues), (2, 2));
    assert!(!a.has_device);
    assert!(a.irqs.is_empty());
    assert!(
        a.notes.iter().any(|n| n.contains("virtual device")),
        "{:?}",
        a.notes
    );
    assert!(a.xdp.native && !a.xdp.zero_copy && a.xdp.generic);
    let text = ok(ns.exec(&["show", "a"]));
    assert!(
        text.contains("queue irqs: none") && text.contains("no IRQs to pin"),
        "{text}"
    );

    // errors are one line saying what to do
    let out = ns.exec(&["show", "eth9"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "mongate-hwconfig: eth9: no such interface (see `ip link`)"
    );

    // plan for one worker: channels 2 -> 1
    let dir = tempfile::tempdir().expect("tempdir");
    let plan1 = dir.path().join("plan1.toml");
    ok(ns.exec(&[
        "plan",
        "--interfaces",
        "a",
        "--workers",
        "1",
        "-o",
        path(&plan1),
    ]));
    let p = plan_from_toml(&std::fs::read_to_string(&plan1).unwrap()).expect("plan parses");
    assert_eq!(p.workers.len(), 1);
    assert_eq!(p.workers[0].queues[0].ifname, "a");
    assert_eq!(p.workers[0].queues[0].irq, None);
    assert_eq!(
        (p.interfaces[0].channels.rx, p.interfaces[0].channels.tx),
        (Some(1), Some(1))
    );

    // dry run prints the command and changes nothing
    let dry = ok(ns.exec(&["apply", "--plan", path(&plan1)]));
    assert!(dry.contains("# dry run"), "{dry}");
    assert!(
        dry.lines().any(|l| l.starts_with("ethtool -L a rx 1 tx 1")),
        "{dry}"
    );
    assert_eq!(rx_tx(&show(&ns, "a")), (2, 2));

    // --apply changes it
    ok(ns.exec(&["apply", "--plan", path(&plan1), "--apply"]));
    let a = show(&ns, "a");
    assert_eq!(rx_tx(&a), (1, 1));
    assert_eq!(a.sysfs_rx_queues, 1);
    let again = ok(ns.exec(&["apply", "--plan", path(&plan1), "--apply"]));
    assert!(again.contains("nothing to change"), "{again}");

    // and back to 2 (a hand-edited plan; independent of the core count)
    let mut p2 = p.clone();
    p2.interfaces[0].channels.rx = Some(2);
    p2.interfaces[0].channels.tx = Some(2);
    let plan2 = dir.path().join("plan2.toml");
    std::fs::write(&plan2, p2.to_toml().unwrap()).unwrap();
    ok(ns.exec(&["apply", "--plan", path(&plan2), "--yes"]));
    let a = show(&ns, "a");
    assert_eq!(rx_tx(&a), (2, 2));
    assert_eq!(a.sysfs_rx_queues, 2);

    // a plan beyond the driver's maximum is refused with advice
    let mut p3 = p;
    p3.interfaces[0].channels.rx = Some(3);
    let plan3 = dir.path().join("plan3.toml");
    std::fs::write(&plan3, p3.to_toml().unwrap()).unwrap();
    let out = ns.exec(&["apply", "--plan", path(&plan3), "--apply"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 2"));
    assert_eq!(rx_tx(&show(&ns, "a")), (2, 2));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
