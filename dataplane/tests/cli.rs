//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate-dataplane stats |
//! head -1`). No network, no root: the stats file is made here, in a run
//! directory of the test's own.

use std::process::Command;

use mongate_testbed::cli::{
    assert_generates, assert_quiet_on_closed_pipe, assert_version, run_with_closed_stdout,
};

use mongate_dataplane::stats::StatsRegion;

const BIN: &str = env!("CARGO_BIN_EXE_mongate-dataplane");

#[test]
fn version() {
    assert_version(BIN, "mongate-dataplane", env!("CARGO_PKG_VERSION"));
}

/// Completions and man pages from `--generate` (docs/deploy.md); without
/// arguments, the usage error as before.
#[test]
fn generate_completions_and_man_pages() {
    assert_generates(
        BIN,
        "mongate-dataplane",
        &["forward", "relay", "run", "stats"],
    );
}

#[test]
fn stats_ends_quietly_on_a_closed_pipe() {
    let dir = std::env::temp_dir().join(format!("mongate-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let region = StatsRegion::create(&dir.join("clitest.stats"), 4).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env("MONGATE_RUN_DIR", &dir)
        .args(["stats", "--name", "clitest"]);
    let out = run_with_closed_stdout(cmd);
    assert_quiet_on_closed_pipe("stats", &out);
    // The same command with an open stdout prints the four workers.
    let shown = Command::new(BIN)
        .env("MONGATE_RUN_DIR", &dir)
        .args(["stats", "--name", "clitest"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    drop(region);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-format json`: the diagnostic lines on stderr are JSON objects with
/// a wall-clock timestamp, a level and a message (here the warning for an
/// unencrypted overlay, logged before the interfaces are looked up, which
/// fail: they do not exist).
#[test]
fn log_lines_are_json_with_wall_clock_timestamps_on_request() {
    let dir = std::env::temp_dir().join(format!("mgt-dp-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let site = dir.join("site.toml");
    // The example runs unencrypted (`[security] mode = "off"`).
    let text = include_str!("../../docs/examples/triangle/site-a.toml")
        .replace("lan_interface = \"", "lan_interface = \"mgtnone-");
    assert!(text.contains("mode = \"off\""));
    std::fs::write(&site, text).unwrap();
    let out = Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&site)
        .args(["--name", "mgt-log-test", "--duration-s", "1"])
        .env("MONGATE_RUN_DIR", &dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "started without its interfaces");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("encrypted"))
        .unwrap_or_else(|| panic!("no security warning: {stderr}"));
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "WARN", "{v}");
    let ts = v["timestamp"].as_str().unwrap_or_else(|| panic!("{v}"));
    // RFC 3339, UTC, this century.
    assert!(
        ts.starts_with("20") && ts.ends_with('Z') && ts.contains('T'),
        "{ts}"
    );
}

/// `run --plan`: a `mongate-hwconfig` plan that does not fit the site
/// gateway (worker w on queue w of the site's interfaces) is refused before
/// anything starts, with the reason.
#[test]
fn run_refuses_a_hardware_plan_that_does_not_fit_the_gateway() {
    let dir = std::env::temp_dir().join(format!("mgt-dp-hwplan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let site = dir.join("site.toml");
    std::fs::write(
        &site,
        include_str!("../../docs/examples/triangle/site-a.toml"),
    )
    .unwrap();
    let worker = |id: u32, core: u32, ifname: &str, queue: u32| {
        format!(
            "[[workers]]\nid = {id}\ncore = {core}\n[[workers.queues]]\nifname = \"{ifname}\"\nqueue = {queue}\n"
        )
    };
    let head = "xdp_mode = \"native\"\nzero_copy = false\n";
    for (plan, needle) in [
        (
            format!(
                "{head}{}{}",
                worker(0, 0, "lan0", 0),
                worker(1, 1, "wan0", 0)
            ),
            "two workers on queue 0",
        ),
        (
            format!("{head}{}", worker(0, 1, "lan0", 1)),
            "runs worker w on queue w",
        ),
        (
            format!(
                "{head}{}[[workers.queues]]\nifname = \"wan0\"\nqueue = 1\n",
                worker(0, 1, "lan0", 0)
            ),
            "runs worker w on queue w",
        ),
        (
            format!("{head}{}", worker(0, 1, "eth9", 0)),
            "not an interface of site A",
        ),
    ] {
        let p = dir.join("plan.toml");
        std::fs::write(&p, &plan).unwrap();
        let out = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&site)
            .arg("--plan")
            .arg(&p)
            .env("MONGATE_RUN_DIR", &dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{plan}: accepted");
        assert!(
            stderr.contains(needle) && stderr.contains("plan.toml"),
            "{plan}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `forward --ring-size`: a size the rings cannot have is refused by the
/// parser, with what is allowed, before any interface is touched.
#[test]
fn forward_refuses_a_ring_size_that_is_not_a_power_of_two_in_range() {
    for bad in ["100", "32", "32768", "0", "x"] {
        let out = Command::new(BIN)
            .args(["forward", "--in", "mgtnone0", "--out", "mgtnone1"])
            .args(["--next-hop-mac", "02:00:00:00:00:01", "--ring-size", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--ring-size"), "{bad}: {stderr}");
        if bad.parse::<u32>().is_ok() {
            assert!(
                stderr.contains("a power of two from 64 to 16384"),
                "{bad}: {stderr}"
            );
        }
    }
}
