//! Deployment (issue 14): the systemd units of `docs/deploy/systemd/` and
//! the privileges they give.
//!
//! - The units pass `systemd-analyze verify` (with their binaries pointed at
//!   this build) and agree with each other: one user for the dataplane and
//!   the control, the run directory as docs/shm.md wants it, the order
//!   hwconfig -> dataplane -> control.
//! - systemd is not PID 1 in the test machine, so the units cannot be
//!   started by systemd here. What they would give each process is given by
//!   hand instead: `setpriv` as an unprivileged user (`nobody` plays the
//!   units' `mongate`) with exactly the capabilities read FROM the unit
//!   files, inside the test's namespaces. The dataplane comes up ("ready"),
//!   carries a ping across the overlay, shows in `mongate status`; the
//!   control attaches with no capability and its plan is in force; without
//!   any one of the dataplane's capabilities it fails at start with a line
//!   naming that capability (no panic); hwconfig's apply changes a veth's
//!   channels with the hwconfig unit's set and fails without it.

mod common;
// Only `secure::instance` (the PFO instance of the triangle) is used here.
#[allow(dead_code)]
#[path = "common/secure.rs"]
mod secure;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongate_testbed::topology::triangle::{tcp_plan, triangle_overlay};
use mongate_testbed::{Netns, NsChild, Sites};

/// Where the units live (docs/deploy.md installs them from here).
const UNIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/systemd");
const DATAPLANE: &str = "mongate-dataplane@.service";
const CONTROL: &str = "mongate-control@.service";
const HWCONFIG: &str = "mongate-hwconfig@.service";

/// The units' binary and configuration directories, replaced by the test's.
const UNIT_BIN_DIR: &str = "/usr/local/bin/";
const UNIT_ETC_DIR: &str = "/etc/mongate/";

/// The uid and gid that play the units' `mongate` user here.
const NOBODY: u32 = 65534;

/// Every capability name Linux knows (capabilities(7)).
const KNOWN_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A unit file: its `Key=value` settings in file order (comments and
/// section headers skipped; no unit here continues a line).
struct Unit {
    name: &'static str,
    text: String,
    settings: Vec<(String, String)>,
}

impl Unit {
    fn load(name: &'static str) -> Self {
        let path = Path::new(UNIT_DIR).join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let settings = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
            .map(|l| {
                assert!(!l.ends_with('\\'), "{name}: continued line {l:?}");
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}: not Key=value: {l:?}"));
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        Self {
            name,
            text,
            settings,
        }
    }

    /// The last value of `key` (systemd: a later assignment wins).
    fn one(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every word of every `key=` line (a list setting such as `After=`).
    fn words(&self, key: &str) -> BTreeSet<String> {
        self.settings
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
            .collect()
    }

    /// A capability list as systemd reads it: lines add up, an empty
    /// assignment resets. Inverted lists (`~CAP_X`) are not used here.
    fn caps(&self, key: &str) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for (_, v) in self.settings.iter().filter(|(k, _)| k == key) {
            if v.is_empty() {
                set.clear();
            }
            for w in v.split_whitespace() {
                assert!(!w.starts_with('~'), "{}: {key}: inverted list", self.name);
                assert!(
                    KNOWN_CAPS.contains(&w),
                    "{}: {key}: unknown capability {w:?}",
                    self.name
                );
                set.insert(w.to_string());
            }
        }
        set
    }

    /// `ExecStart=` as an argument vector for instance `instance`: the
    /// binary from this build, `/etc/mongate/` as `etc`, `$MONGATE_*_ARGS`
    /// as `extra`.
    fn exec_start(&self, instance: &str, etc: &Path, extra: &[&str]) -> Vec<String> {
        let line = self
            .one("ExecStart")
            .unwrap_or_else(|| panic!("{}: no ExecStart", self.name));
        let mut argv = Vec::new();
        for w in line.split_whitespace() {
            if w.starts_with('$') {
                argv.extend(extra.iter().map(|s| (*s).to_string()));
                continue;
            }
            let w = w.replace("%i", instance);
            let w = if let Some(bin) = w.strip_prefix(UNIT_BIN_DIR) {
                bin_dir().join(bin).display().to_string()
            } else if let Some(f) = w.strip_prefix(UNIT_ETC_DIR) {
                etc.join(f).display().to_string()
            } else {
                w
            };
            assert!(
                !w.contains('%') && !w.contains('$'),
                "{}: specifier left in {w:?}",
                self.name
            );
            argv.push(w);
        }
        argv
    }
}

/// The directory of this build's binaries.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mongate"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `setpriv` options that give what a unit gives: `caps` as the ambient,
/// inheritable and bounding sets, as `uid`/`gid` (uid 0 keeps root's uid:
/// then the bounding set is what limits it), no new privileges if asked.
fn setpriv(uid: u32, caps: &BTreeSet<String>, no_new_privs: bool) -> Vec<String> {
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut v = vec!["setpriv".to_string()];
    if uid != 0 {
        v.extend([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            format!("--inh-caps=-all{list}"),
            format!("--ambient-caps=-all{list}"),
        ]);
    }
    v.push(format!("--bounding-set=-all{list}"));
    if no_new_privs {
        v.push("--no-new-privs".into());
    }
    v.push("--".into());
    v
}

/// The hard RLIMIT_MEMLOCK of this process in bytes (`None`: unlimited).
fn memlock_hard() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// A process started in `ns` with its output in `log`.
fn spawn_logged(ns: &Netns, argv: &[String], envs: &[(&str, &Path)], log: &Path) -> NsChild {
    let f = std::fs::File::create(log).unwrap();
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    for (k, v) in envs {
        c.env(k, v);
    }
    ns.spawn(c).unwrap()
}

/// Waits (bounded) until `log` has a line starting with `prefix` or the
/// process ended; the log's text, and whether the line came.
fn wait_line(child: &NsChild, log: &Path, prefix: &str, timeout: Duration) -> (bool, String) {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(prefix)) {
            return (true, text);
        }
        let ended = child.try_wait().unwrap().is_some();
        if ended || t0.elapsed() > timeout {
            // The last words of a process that just ended.
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let found = text.lines().any(|l| l.starts_with(prefix));
            return (found, text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn units_pass_systemd_analyze_verify_and_agree() {
    let dp = Unit::load(DATAPLANE);
    let ctl = Unit::load(CONTROL);
    let hw = Unit::load(HWCONFIG);

    // Capabilities: the dataplane's ambient set is its whole bounding set;
    // the control has none; hwconfig runs as root limited by its bounding
    // set. (Which ones the dataplane needs is shown by the network test.)
    let dp_caps = dp.caps("AmbientCapabilities");
    assert!(!dp_caps.is_empty(), "{DATAPLANE}: no capabilities");
    assert_eq!(dp_caps, dp.caps("CapabilityBoundingSet"), "{DATAPLANE}");
    assert!(ctl.caps("AmbientCapabilities").is_empty(), "{CONTROL}");
    assert!(ctl.caps("CapabilityBoundingSet").is_empty(), "{CONTROL}");
    assert!(hw.caps("AmbientCapabilities").is_empty(), "{HWCONFIG}");
    assert!(!hw.caps("CapabilityBoundingSet").is_empty(), "{HWCONFIG}");
    assert_eq!(hw.one("User"), Some("root"), "{HWCONFIG}");

    // One user for both processes (the control region is 0600, its
    // owner's), not root; the run directory as docs/shm.md wants it, kept
    // across restarts (both units name it).
    let user = dp.one("User").expect("dataplane User=");
    assert_ne!(user, "root");
    for u in [&dp, &ctl] {
        assert_eq!(u.one("User"), Some(user), "{}", u.name);
        assert_eq!(u.one("Group"), dp.one("Group"), "{}", u.name);
        assert_eq!(u.one("RuntimeDirectory"), Some("mongate"), "{}", u.name);
        assert_eq!(u.one("RuntimeDirectoryMode"), Some("0750"), "{}", u.name);
        assert_eq!(u.one("RuntimeDirectoryPreserve"), Some("yes"), "{}", u.name);
    }
    for u in [&dp, &ctl, &hw] {
        assert_eq!(u.one("NoNewPrivileges"), Some("yes"), "{}", u.name);
        assert_eq!(u.one("ProtectSystem"), Some("strict"), "{}", u.name);
        assert_eq!(u.one("ProtectHome"), Some("yes"), "{}", u.name);
    }
    // Order: hwconfig, then the dataplane, then its control (bound to it).
    assert!(hw.words("Before").contains("mongate-dataplane@%i.service"));
    assert!(dp.words("After").contains("mongate-hwconfig@%i.service"));
    assert!(ctl.words("After").contains("mongate-dataplane@%i.service"));
    assert!(
        ctl.words("BindsTo")
            .contains("mongate-dataplane@%i.service")
    );
    // Every unit runs a binary of this workspace from /usr/local/bin.
    let etc = Path::new("/etc/mongate");
    for u in [&dp, &ctl, &hw] {
        let argv = u.exec_start("site", etc, &[]);
        assert!(
            Path::new(&argv[0]).exists(),
            "{}: {} not built",
            u.name,
            argv[0]
        );
    }

    if !mongate_testbed::have_program("systemd-analyze") {
        println!("SKIP systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists: the copies run this
    // build's binaries instead of /usr/local/bin's; nothing else changes.
    let dir = common::TempDir::new("mgt-units");
    let mut files = Vec::new();
    for u in [&dp, &ctl, &hw] {
        let text = u
            .text
            .replace(UNIT_BIN_DIR, &format!("{}/", bin_dir().display()));
        let p = dir.join(u.name);
        std::fs::write(&p, text).unwrap();
        files.push(p);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        out.status
    );
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    println!(
        "systemd-analyze verify: {} units clean. PID 1 here is {:?}, not systemd: the units are not \
         started by systemd in this test; deploy.rs's network test gives the dataplane and control \
         the units' users and capabilities with setpriv instead",
        files.len(),
        pid1.trim()
    );
}

#[test]
fn dataplane_and_control_run_with_only_the_units_capabilities() {
    if common::skip("dataplane_and_control_run_with_only_the_units_capabilities") {
        return;
    }
    if !mongate_testbed::have_program("setpriv") {
        println!(
            "SKIP dataplane_and_control_run_with_only_the_units_capabilities: setpriv (util-linux) not installed"
        );
        return;
    }
    let _g = common::net_lock();
    let dp = Unit::load(DATAPLANE);
    let ctl = Unit::load(CONTROL);
    let dp_caps = dp.caps("AmbientCapabilities");
    let ctl_caps = ctl.caps("AmbientCapabilities");
    let dp_nnp = dp.one("NoNewPrivileges") == Some("yes");
    let ctl_nnp = ctl.one("NoNewPrivileges") == Some("yes");
    println!(
        "units: dataplane as uid {NOBODY} with {dp_caps:?}, control with {ctl_caps:?} (systemd is \
         not PID 1 here: setpriv gives what the units would)"
    );

    let dir = common::TempDir::new("mgt-deploy");
    std::fs::set_permissions(&*dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = dir.join("etc");
    std::fs::create_dir(&etc).unwrap();
    // The run directories: the root gateways' (B and C), and A's as
    // RuntimeDirectory= would make it: owned by the unit's user, 0750.
    let run_root = dir.join("run-root");
    let run_a = dir.join("run-a");
    for d in [&run_root, &run_a] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    std::os::unix::fs::chown(&run_a, Some(NOBODY), Some(NOBODY)).unwrap();

    let mut s = Sites::triangle().prefix("mgdep");
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let plan = tcp_plan(1, 8.0);
    let spec = triangle_overlay(Some(plan.clone()));
    for site in ["A", "B", "C"] {
        std::fs::write(
            etc.join(format!("{site}.toml")),
            topo.site_config(site, &spec).unwrap(),
        )
        .unwrap();
    }
    let inst = secure::instance(&etc, &spec, &plan, |_| {
        r#"{"piecewise_linear": [[0.0, 0.0], [2.0, 10.0]]}"#.to_string()
    });
    std::fs::rename(&inst, etc.join("org.json")).unwrap();

    // B and C: root gateways on the file's plan (the far ends of A's paths).
    let dp_bin = bin_dir().join("mongate-dataplane");
    let mut others = Vec::new();
    for site in ["B", "C"] {
        let argv: Vec<String> = [
            dp_bin.display().to_string(),
            "run".into(),
            "--config".into(),
            etc.join(format!("{site}.toml")).display().to_string(),
            "--name".into(),
            site.into(),
            "--xdp-mode".into(),
            "native".into(),
            "--no-control".into(),
        ]
        .into();
        let log = dir.join(format!("gateway-{site}.log"));
        let ns = &topo.site(site).unwrap().gw_ns;
        let child = spawn_logged(ns, &argv, &[("MONGATE_RUN_DIR", &run_root)], &log);
        let (ok, text) = wait_line(&child, &log, "ready:", Duration::from_secs(30));
        assert!(ok, "gateway {site} (root) did not start:\n{text}");
        others.push(child);
    }

    // The UMEM counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK: a usual
    // 8 MiB limit (lower if ours is), so that capability is what lets it.
    let memlock = memlock_hard().map_or(8 << 20, |h| h.min(8 << 20));
    let a_ns = &topo.site("A").unwrap().gw_ns;
    let start_a = |caps: &BTreeSet<String>, log: &Path| {
        let mut argv = vec![
            "prlimit".to_string(),
            format!("--memlock={memlock}:{memlock}"),
            "--".into(),
        ];
        argv.extend(setpriv(NOBODY, caps, dp_nnp));
        argv.extend(dp.exec_start("A", &etc, &["--xdp-mode", "native"]));
        spawn_logged(a_ns, &argv, &[("MONGATE_RUN_DIR", &run_a)], log)
    };
    let status = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mongate"))
            .arg("status")
            .args(args)
            .env("MONGATE_RUN_DIR", &run_a)
            .output()
            .expect("mongate status");
        assert!(
            out.status.success(),
            "mongate status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let c_ip = topo
        .site("C")
        .unwrap()
        .host_if()
        .v4
        .unwrap()
        .addr
        .to_string();
    let ping = || {
        let out = topo
            .site("A")
            .unwrap()
            .lan_ns
            .exec_unchecked(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &c_ip])
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };

    // A: the dataplane unit's command line, as nobody with its capabilities.
    let log_a = dir.join("gateway-A.log");
    let gw_a = start_a(&dp_caps, &log_a);
    let (ok, text) = wait_line(&gw_a, &log_a, "ready:", Duration::from_secs(30));
    assert!(
        ok,
        "unprivileged dataplane did not start with {dp_caps:?}:\n{text}"
    );
    println!("dataplane as nobody: {}", text.lines().last().unwrap_or(""));
    // Its files are the unit user's, with docs/shm.md's modes.
    for (f, mode) in [
        ("A.stats", 0o640),
        ("A.flows", 0o640),
        ("A.ctl", 0o600),
        ("A.mirror", 0o600),
    ] {
        let m = std::fs::metadata(run_a.join(f)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (NOBODY, mode), "{f}");
    }
    let (ok, out) = ping();
    assert!(ok, "ping A->C through the unprivileged gateway:\n{out}");
    let v: serde_json::Value =
        serde_json::from_str(&status(&["--name", "A", "--json", "--interval-ms", "200"])).unwrap();
    let g = &v["gateways"][0];
    assert_eq!(g["process"], "running", "{g}");
    let rx: u64 = g["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rx_packets"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        rx >= 3,
        "no packets counted by the unprivileged gateway: {g}"
    );

    // The control: the control unit's command line, as nobody with its
    // (empty) capability set; it attaches and its plan is in force.
    let log_c = dir.join("control-A.log");
    let mut argv = setpriv(NOBODY, &ctl_caps, ctl_nnp);
    argv.extend(ctl.exec_start("A", &etc, &[]));
    let control = spawn_logged(a_ns, &argv, &[("MONGATE_RUN_DIR", &run_a)], &log_c);
    let t0 = Instant::now();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&status(&["--name", "A", "--json", "--interval-ms", "100"]))
                .unwrap();
        let g = &v["gateways"][0];
        if g["control"]["attached"] == true && g["plan"]["epoch"].as_u64() > Some(plan.epoch) {
            println!(
                "control as nobody, no capabilities: attached, plan epoch {}",
                g["plan"]["epoch"]
            );
            break;
        }
        assert!(
            control.try_wait().unwrap().is_none(),
            "the unprivileged control exited:\n{}",
            std::fs::read_to_string(&log_c).unwrap_or_default()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the unprivileged control's plan not in force: {g}\n{}",
            std::fs::read_to_string(&log_c).unwrap_or_default()
        );
    }
    let m = std::fs::metadata(run_a.join("A.plan")).unwrap();
    assert_eq!(m.uid(), NOBODY, "A.plan");
    let (ok, out) = ping();
    assert!(ok, "ping with the control attached:\n{out}");
    // A control restart (here: stop) leaves traffic flowing.
    let st = control.stop(Duration::from_secs(5)).unwrap();
    assert!(st.is_some_and(|s| s.success()), "control stop: {st:?}");
    let (ok, out) = ping();
    assert!(ok, "ping after the control stopped:\n{out}");
    let st = gw_a.stop(Duration::from_secs(5)).unwrap();
    assert!(
        st.is_some_and(|s| s.success()),
        "dataplane stop: {st:?}\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    assert!(
        !run_a.join("A.stats").exists(),
        "A.stats left after a clean stop"
    );

    // Without any one of its capabilities the dataplane refuses to start,
    // with one line naming the capability.
    for cap in &dp_caps {
        let mut less = dp_caps.clone();
        less.remove(cap);
        let log = dir.join(format!("gateway-A-no-{cap}.log"));
        let gw = start_a(&less, &log);
        let st = gw.wait_timeout(Duration::from_secs(30)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            st.is_some_and(|s| !s.success()),
            "the dataplane ran without {cap}: {st:?}\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
        let err = text
            .lines()
            .find(|l| l.starts_with("mongate-dataplane: "))
            .unwrap_or_else(|| panic!("no error line without {cap}:\n{text}"));
        assert!(err.contains(cap.as_str()), "without {cap}: {err}");
        println!("without {cap}: {err}");
    }
    drop(others);
}

#[test]
fn hwconfig_applies_channels_with_only_its_units_capabilities() {
    if common::skip("hwconfig_applies_channels_with_only_its_units_capabilities") {
        return;
    }
    if !mongate_testbed::have_program("setpriv") {
        println!("SKIP hwconfig_applies_channels_with_only_its_units_capabilities: no setpriv");
        return;
    }
    let _g = common::net_lock();
    let hw = Unit::load(HWCONFIG);
    let caps = hw.caps("CapabilityBoundingSet");
    let nnp = hw.one("NoNewPrivileges") == Some("yes");
    let dir = common::TempDir::new("mgt-deploy-hw");
    let ns = Netns::new("mgt-dhw").expect("namespace");
    ns.ip(&[
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
    ])
    .unwrap();
    let hw_bin = bin_dir().join("mongate-hwconfig").display().to_string();
    let plan = dir.join("plan.toml").display().to_string();
    ns.exec(&[&hw_bin, "plan", "-i", "a,b", "--workers", "1", "-o", &plan])
        .unwrap();
    // `ip netns exec` (sysfs of the namespace), then what the unit gives:
    // root limited to its bounding set.
    let apply = |caps: &BTreeSet<String>| {
        let mut argv: Vec<String> = setpriv(0, caps, nnp);
        argv.extend(hw.exec_start("x", &dir, &[]));
        // The unit's plan path is /etc/mongate/%i.plan.toml: ours instead.
        let at = argv.iter().position(|a| a == "--plan").unwrap() + 1;
        argv[at] = plan.clone();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        ns.exec_unchecked(&argv).unwrap()
    };
    let none = apply(&BTreeSet::new());
    let said = String::from_utf8_lossy(&none.stderr).to_string();
    assert!(!none.status.success(), "applied with no capability");
    assert!(said.contains("CAP_NET_ADMIN"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    println!("hwconfig apply without CAP_NET_ADMIN: {}", said.trim());
    let out = apply(&caps);
    assert!(
        out.status.success(),
        "hwconfig apply with {caps:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = ns.exec(&["ethtool", "-l", "a"]).unwrap();
    let l = String::from_utf8_lossy(&l.stdout).to_string();
    let current = l.split("Current hardware settings:").nth(1).unwrap_or("");
    assert!(
        current
            .lines()
            .any(|x| x.split_whitespace().collect::<Vec<_>>() == ["RX:", "1"]),
        "channels not applied:\n{l}"
    );
    println!("hwconfig apply as root with {caps:?}: a is down to 1 rx/tx queue");
}
