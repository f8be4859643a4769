//! The command line as an operator meets it, for every binary's
//! `tests/cli.rs`: `BIN --version`, and reports that end quietly when their
//! reader goes away (`... --json | head -1`). No network, no root.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with its stdout a pipe whose read end is already closed, so
/// its first write to stdout fails (EPIPE or SIGPIPE), as under `| head -0`.
#[allow(unsafe_code)]
pub fn run_with_closed_stdout(mut cmd: Command) -> Output {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the two-element array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created by pipe2 and nothing else
    // owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    cmd.output().expect("spawn")
}

/// The command ended quietly on its closed stdout: no panic message, and
/// either success or the default action of SIGPIPE.
pub fn assert_quiet_on_closed_pipe(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what}: {:?}, stderr: {stderr}",
        out.status
    );
}

/// `bin --version` prints `name version` (the calling crate's
/// `env!("CARGO_PKG_VERSION")`).
pub fn assert_version(bin: &str, name: &str, version: &str) {
    let out = Command::new(bin).arg("--version").output().expect("spawn");
    assert!(out.status.success(), "{name} --version: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{name} {version}")
    );
}

/// `bin --generate KIND` (`mongate_hwconfig::cli_generate`) and normal use
/// beside it, for a binary `name` whose subcommands are `subcommands` (in
/// the order of its help, `help` left out):
/// - `--generate subcommands` lists exactly them;
/// - the bash completion passes `bash -n` and, loaded into bash, completes
///   the empty first word to every subcommand; zsh and fish scripts are made
///   for `name` (checked with `zsh -n`/`fish -n` where installed);
/// - `--generate man` is a page titled `name` that names every
///   subcommand, and each subcommand has its page titled `name-sub`; with
///   groff installed, every page renders without a warning;
/// - a wrong KIND is a usage error (2) naming the kinds; a closed stdout
///   ends it quietly;
/// - the binary without arguments still prints its usage with the
///   subcommands on stderr and exits 2 (clap's error, as before
///   `--generate`).
pub fn assert_generates(bin: &str, name: &str, subcommands: &[&str]) {
    let generate = |args: &[&str]| -> String {
        let out = Command::new(bin)
            .arg("--generate")
            .args(args)
            .output()
            .expect("spawn");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name} --generate {args:?}: {out:?}"
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let dir = std::env::temp_dir().join(format!("mongate-generate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let listed = generate(&["subcommands"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), subcommands, "{name}");

    let bash = generate(&["complete-bash"]);
    let file = dir.join("complete.bash");
    std::fs::write(&file, &bash).unwrap();
    let out = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(out.status.success(), "{name}: bash -n: {out:?}");
    // What bash does on `name <TAB>`: the function registered for `name`
    // called with the words typed so far.
    let script = format!(
        r#"source "$1"
f=$(complete -p {name} | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=({name} ""); COMP_CWORD=1; COMP_LINE="{name} "; COMP_POINT=${{#COMP_LINE}}
"$f" {name} "" {name}
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash")
        .args(["-c", &script, "bash"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: bash completion: {out:?}");
    let words = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = words.lines().collect();
    for s in subcommands {
        assert!(words.contains(s), "{name} <TAB> misses {s}: {words:?}");
    }
    for (kind, shell, marker) in [
        ("complete-zsh", "zsh", format!("#compdef {name}")),
        ("complete-fish", "fish", format!("complete -c {name} ")),
    ] {
        let text = generate(&[kind]);
        assert!(text.contains(&marker), "{name} --generate {kind}: {text}");
        let file = dir.join(kind);
        std::fs::write(&file, &text).unwrap();
        match Command::new(shell).arg("-n").arg(&file).output() {
            Ok(out) => assert!(out.status.success(), "{name}: {shell} -n: {out:?}"),
            Err(_) => eprintln!("SKIP {name} --generate {kind}: no {shell} to check its syntax"),
        }
    }

    // roff escapes the hyphens of names (`\-`).
    let roff = |s: &str| s.replace('-', "\\-");
    let top = generate(&["man"]);
    let mut pages = vec![(name.to_owned(), top.clone())];
    for s in subcommands {
        assert!(
            top.contains(&roff(&format!("{name}-{s}(1)"))),
            "{name}.1 does not name {s}: {top}"
        );
        pages.push((format!("{name}-{s}"), generate(&["man", s])));
    }
    for (title, page) in &pages {
        // After roff's preamble (`.ie`/`.el`: the apostrophe string).
        let first = page
            .lines()
            .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
            .unwrap_or_default();
        let th = format!(".TH {title} 1 ");
        assert!(
            first.starts_with(&th),
            "{title}.1 does not start with {th:?}: {page}"
        );
    }
    let groff = Command::new("groff").arg("-v").output();
    if groff.is_ok_and(|o| o.status.success()) {
        for (title, page) in &pages {
            let file = dir.join(format!("{title}.1"));
            std::fs::write(&file, page).unwrap();
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{title}.1: groff: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        eprintln!("SKIP {name} man pages through groff: no groff");
    }

    let out = Command::new(bin)
        .args(["--generate", "html"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name} --generate html: {out:?}"
    );
    assert!(
        stderr.contains("unknown KIND \"html\"") && stderr.contains("complete-bash"),
        "{stderr}"
    );
    let mut cmd = Command::new(bin);
    cmd.args(["--generate", "man"]);
    assert_quiet_on_closed_pipe("--generate man", &run_with_closed_stdout(cmd));

    let out = Command::new(bin).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name} alone: {out:?}");
    assert!(out.stdout.is_empty(), "{name} alone: {out:?}");
    assert!(
        stderr.contains(&format!("Usage: {name} <COMMAND>"))
            || stderr.contains(&format!("Usage: {name} [OPTIONS] <COMMAND>")),
        "{stderr}"
    );
    for s in subcommands {
        assert!(
            stderr.contains(&format!("\n  {s} ")),
            "{name} alone: no {s}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
