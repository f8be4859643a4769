//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate keygen ... | head`).
//! No network, no root.

use std::process::Command;

use mongate_testbed::cli::{
    assert_generates, assert_quiet_on_closed_pipe, assert_version, run_with_closed_stdout,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongate");

#[test]
fn version() {
    assert_version(BIN, "mongate", env!("CARGO_PKG_VERSION"));
}

/// Completions and man pages from `--generate` (docs/deploy.md); without
/// arguments, the usage error as before.
#[test]
fn generate_completions_and_man_pages() {
    assert_generates(
        BIN,
        "mongate",
        &[
            "demo", "reload", "keygen", "pubkey", "check", "metrics", "capture", "status",
        ],
    );
}

/// `mongate check`: the triangle's files are clean (exit 0, nothing on
/// stdout); a broken one gives one line per problem and exit 1; nothing to
/// check is a usage error (2); a closed stdout ends it quietly.
#[test]
fn check() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/triangle");
    let mut args = vec!["check".to_owned()];
    for s in ["a", "b", "c"] {
        args.extend(["--config".to_owned(), format!("{ex}/site-{s}.toml")]);
    }
    args.extend(["--instance".to_owned(), format!("{ex}/instance.json")]);
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    let dir = std::env::temp_dir().join(format!("mongate-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("site-a.toml");
    let text = std::fs::read_to_string(format!("{ex}/site-a.toml"))
        .unwrap()
        .replacen("vni = 4242", "vni = -1", 1)
        .replacen(r#"overflow = "drop""#, r#"overflow = "sometimes""#, 1);
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let f = bad.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{f}:10:7: site.vni: ")),
        "{stdout}"
    );
    assert!(lines[1].contains(": classes[0].overflow: "), "{stdout}");
    let mut cmd = Command::new(BIN);
    cmd.arg("check").arg("--config").arg(&bad);
    assert_quiet_on_closed_pipe("check", &run_with_closed_stdout(cmd));
    let _ = std::fs::remove_dir_all(&dir);

    let out = Command::new(BIN).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn keygen_and_pubkey_end_quietly_on_a_closed_pipe() {
    let dir = std::env::temp_dir().join(format!("mongate-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("a.key");
    let mut cmd = Command::new(BIN);
    cmd.arg("keygen").arg("--out").arg(&key);
    assert_quiet_on_closed_pipe("keygen", &run_with_closed_stdout(cmd));
    assert!(key.exists(), "keygen wrote no key");
    let mut cmd = Command::new(BIN);
    cmd.arg("pubkey").arg("--key").arg(&key);
    assert_quiet_on_closed_pipe("pubkey", &run_with_closed_stdout(cmd));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/install-extras.sh PREFIX`: a man page per binary and
/// subcommand and three completion scripts per binary, in the layout of
/// `PREFIX/share`; without the binaries, a line saying to build first.
#[test]
fn install_extras_writes_every_page_and_completion() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let prefix = std::env::temp_dir().join(format!("mongate-extras-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/install-extras.sh"))
        .arg(&prefix)
        .env("MONGATE_BIN_DIR", bin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let share = prefix.join("share");
    let bins: [(&str, &[&str]); 5] = [
        (
            "mongate",
            &[
                "demo", "reload", "keygen", "pubkey", "check", "metrics", "capture", "status",
            ],
        ),
        ("mongate-dataplane", &["forward", "relay", "run", "stats"]),
        ("mongate-control", &["pfo", "run"]),
        (
            "mongate-bench",
            &[
                "forward", "gateway", "pacing", "pipeline", "linkem", "attack",
            ],
        ),
        ("mongate-hwconfig", &["show", "plan", "apply"]),
    ];
    let mut expected = Vec::new();
    for (b, subs) in bins {
        expected.push(format!("man/man1/{b}.1"));
        expected.extend(subs.iter().map(|s| format!("man/man1/{b}-{s}.1")));
        expected.push(format!("bash-completion/completions/{b}"));
        expected.push(format!("zsh/site-functions/_{b}"));
        expected.push(format!("fish/vendor_completions.d/{b}.fish"));
    }
    let mut found = Vec::new();
    for d in [
        "man/man1",
        "bash-completion/completions",
        "zsh/site-functions",
        "fish/vendor_completions.d",
    ] {
        for e in std::fs::read_dir(share.join(d)).unwrap() {
            let e = e.unwrap();
            let len = e.metadata().unwrap().len();
            let f = format!("{d}/{}", e.file_name().to_string_lossy());
            assert!(len > 0, "{f} is empty");
            found.push(f);
        }
    }
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    let page = std::fs::read_to_string(share.join("man/man1/mongate-dataplane-run.1")).unwrap();
    assert!(page.contains("\n.TH mongate-dataplane-run 1 "), "{page}");

    let out = Command::new("bash")
        .arg(format!("{root}/scripts/install-extras.sh"))
        .arg(&prefix)
        .env("MONGATE_BIN_DIR", prefix.join("nowhere"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("build first"), "{stderr}");
    let _ = std::fs::remove_dir_all(&prefix);
}
