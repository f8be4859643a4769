//! `BIN --generate KIND`: shell completions and man pages for every binary of
//! the workspace, made from the binary's own clap definitions (one source of
//! truth: a new option shows up in them at the next build).
//!
//! Why it lives in `mongate-hwconfig`, which is otherwise about hardware:
//! it is the one library every binary can reach. `mongate-hwconfig` is a
//! dependency of `mongate-dataplane`, which `mongate-control`,
//! `mongate-bench` and `mongate` depend on, while `mongate-hwconfig`'s own
//! binary cannot depend on any of those. A crate of its own for one function
//! would be more to build and publish than this module.
//!
//! Each `main` calls [`generate_if_asked`] before parsing its command line.
//! The option is looked for before clap parses, not declared in the clap
//! definitions: the binaries' subcommands stay required and the messages of
//! normal use (no subcommand, a wrong option) stay what they were. Hence
//! `--generate` must come first, right after the binary's name, and is not in
//! `--help` (as a hidden option would not be either).
//!
//! KIND (output on stdout):
//! - `man`: the binary's man page (section 1, e.g. `mongate-dataplane.1`);
//!   `man SUBCOMMAND`: a subcommand's (`mongate-dataplane-run.1`);
//! - `complete-bash`, `complete-zsh`, `complete-fish`: a completion script;
//! - `subcommands`: the subcommand names, one a line (what
//!   `scripts/install-extras.sh` makes a man page of).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// What `--generate` may make, as the operator spells it.
pub const KINDS: &[&str] = &[
    "man",
    "complete-bash",
    "complete-zsh",
    "complete-fish",
    "subcommands",
];

/// A request that could not be understood: the message says what to give.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// If the command line (after the binary's name) starts with `--generate`,
/// writes what it asks for to stdout and returns the exit status; otherwise
/// returns `None` and the binary parses its command line as usual.
///
/// Exit status 2 for a request it does not understand (as clap's usage
/// errors), 1 if stdout fails; a reader that goes away early (`| head`)
/// ends it quietly with 0.
pub fn generate_if_asked<C: CommandFactory>() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if !is_request(&args) {
        return None;
    }
    let cmd = C::command();
    let name = cmd.get_name().to_owned();
    let mut stdout = std::io::stdout().lock();
    let r =
        generate(cmd, &args, &mut stdout).and_then(|()| stdout.flush().map_err(GenerateError::Io));
    Some(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(GenerateError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(GenerateError::Usage(e)) => {
            eprintln!("{name}: --generate: {e}");
            ExitCode::from(2)
        }
        Err(GenerateError::Io(e)) => {
            eprintln!("{name}: --generate: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Why [`generate`] did not write its output.
#[derive(Debug)]
pub enum GenerateError {
    /// The request: a missing or unknown KIND or subcommand.
    Usage(UsageError),
    /// Writing the output.
    Io(std::io::Error),
}

impl From<std::io::Error> for GenerateError {
    fn from(e: std::io::Error) -> Self {
        GenerateError::Io(e)
    }
}

/// The command line (without the binary's name) asks for `--generate`.
pub fn is_request(args: &[OsString]) -> bool {
    args.first().is_some_and(|a| {
        a == "--generate" || a.to_str().is_some_and(|s| s.starts_with("--generate="))
    })
}

/// Writes what `args` (`--generate KIND [SUBCOMMAND]` or
/// `--generate=KIND [SUBCOMMAND]`) asks for about `cmd` into `out`.
pub fn generate(
    cmd: clap::Command,
    args: &[OsString],
    out: &mut dyn Write,
) -> Result<(), GenerateError> {
    let usage = |m: String| GenerateError::Usage(UsageError(m));
    let kinds = KINDS.join(", ");
    let mut rest = args.iter().map(|a| {
        a.to_str()
            .ok_or_else(|| usage(format!("{a:?} is not UTF-8")))
    });
    let first = rest.next().transpose()?.unwrap_or_default();
    let kind = match first.strip_prefix("--generate=") {
        Some(k) => k,
        None => rest
            .next()
            .transpose()?
            .ok_or_else(|| usage(format!("give a KIND: one of {kinds}")))?,
    };
    let operands = rest.collect::<Result<Vec<&str>, _>>()?;
    let no_operand = |operands: &[&str]| match operands {
        [] => Ok(()),
        [o, ..] => Err(usage(format!("{kind}: unexpected argument {o:?}"))),
    };
    let shell = match kind {
        "man" => {
            return match operands.as_slice() {
                [] => man(cmd, None, out),
                [sub] => man(cmd, Some(*sub), out),
                [_, o, ..] => Err(usage(format!("man: unexpected argument {o:?}"))),
            };
        }
        "subcommands" => {
            no_operand(&operands)?;
            for s in subcommand_names(&cmd) {
                writeln!(out, "{s}")?;
            }
            return Ok(());
        }
        "complete-bash" => Shell::Bash,
        "complete-zsh" => Shell::Zsh,
        "complete-fish" => Shell::Fish,
        other => return Err(usage(format!("unknown KIND {other:?}: one of {kinds}"))),
    };
    no_operand(&operands)?;
    let mut cmd = cmd;
    let name = cmd.get_name().to_owned();
    // clap_complete panics when its writer fails (a closed stdout): it
    // writes into memory, and the one write that can fail is ours.
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut text);
    out.write_all(&text)?;
    Ok(())
}

/// The subcommands a man page is made for: every visible one but `help`
/// (the man pages are the help).
fn subcommand_names(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// The man page of `cmd`, or of its subcommand `sub` (titled
/// `BIN-SUB`, its synopsis `BIN SUB ...`).
fn man(cmd: clap::Command, sub: Option<&str>, out: &mut dyn Write) -> Result<(), GenerateError> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Sets the subcommands' display names (`mongate-dataplane-run`) and
    // their usage's binary name (`mongate-dataplane run`).
    cmd.build();
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let page = match sub {
        None => clap_mangen::Man::new(cmd),
        Some(s) => {
            let found = cmd
                .get_subcommands()
                .find(|c| c.get_name() == s && !c.is_hide_set())
                .cloned();
            let Some(found) = found else {
                return Err(GenerateError::Usage(UsageError(format!(
                    "man: no subcommand {s:?}: one of {}",
                    subcommand_names(&cmd).join(", ")
                ))));
            };
            clap_mangen::Man::new(found)
        }
    };
    page.source(source).render(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(clap::Parser)]
    #[command(name = "tool", version = "1.2.3", about = "A tool")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[allow(dead_code)]
    #[derive(clap::Subcommand)]
    enum Cmd {
        /// Run it.
        Run {
            /// How often.
            #[arg(long)]
            times: u32,
        },
        /// Show it.
        Show,
    }

    fn gen_of(args: &[&str]) -> Result<String, GenerateError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        assert!(is_request(&args));
        let mut out = Vec::new();
        generate(Cli::command(), &args, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn usage_of(args: &[&str]) -> String {
        match gen_of(args) {
            Err(GenerateError::Usage(UsageError(m))) => m,
            other => panic!("{args:?}: not a usage error: {other:?}"),
        }
    }

    #[test]
    fn man_pages_of_the_binary_and_a_subcommand() {
        // roff's preamble (`.ie`/`.el`: the apostrophe string), then `.TH`.
        let th = |page: &str| {
            page.lines()
                .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
                .unwrap_or_default()
                .to_owned()
        };
        let top = gen_of(&["--generate", "man"]).unwrap();
        assert!(th(&top).starts_with(".TH tool 1 "), "{top}");
        assert!(top.contains("tool\\-run(1)"), "{top}");
        assert!(!top.contains("tool\\-help"), "{top}");
        let run = gen_of(&["--generate=man", "run"]).unwrap();
        assert!(th(&run).starts_with(".TH tool-run 1 "), "{run}");
        assert!(run.contains("\\-\\-times"), "{run}");
        assert!(run.contains("tool 1.2.3"), "{run}");
    }

    #[test]
    fn completions_and_subcommands() {
        let bash = gen_of(&["--generate", "complete-bash"]).unwrap();
        assert!(
            bash.contains("complete ") && bash.contains("--times"),
            "{bash}"
        );
        assert!(
            gen_of(&["--generate", "complete-zsh"])
                .unwrap()
                .contains("#compdef tool")
        );
        assert!(
            gen_of(&["--generate", "complete-fish"])
                .unwrap()
                .contains("complete -c tool")
        );
        assert_eq!(
            gen_of(&["--generate", "subcommands"]).unwrap(),
            "run\nshow\n"
        );
    }

    #[test]
    fn bad_requests_are_usage_errors() {
        assert!(usage_of(&["--generate"]).contains("give a KIND"));
        assert!(usage_of(&["--generate", "html"]).contains("unknown KIND \"html\""));
        assert!(usage_of(&["--generate", "man", "nope"]).contains("one of run, show"));
        assert!(usage_of(&["--generate", "man", "help"]).contains("no subcommand"));
        assert!(usage_of(&["--generate", "man", "run", "x"]).contains("unexpected"));
        assert!(usage_of(&["--generate", "complete-bash", "x"]).contains("unexpected"));
    }

    #[test]
    fn only_a_leading_generate_is_a_request() {
        let is = |a: &[&str]| is_request(&a.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(!is(&[]));
        assert!(!is(&["run", "--generate", "man"]));
        assert!(!is(&["--generated"]));
        assert!(is(&["--generate=man"]));
    }
}
