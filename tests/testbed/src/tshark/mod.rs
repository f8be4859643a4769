//! Wire captures checked by Wireshark's own dissectors: [`Dumpcap`] records
//! an interface of a namespace into a pcapng file, [`geneve_check`] decodes
//! it with `tshark` (UDP 6081 as GENEVE) and reports frames that are not
//! GENEVE and frames tshark finds malformed or erroneous; [`count`] counts
//! the frames matching a display filter (e.g. `frame contains ...`, to tell
//! whether a payload is readable on the wire). Needs `dumpcap` and `tshark`
//! (Debian `tshark`); callers skip with a printed reason without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::{Netns, NsChild};

/// A running `dumpcap` writing one interface to a file.
#[derive(Debug)]
pub struct Dumpcap {
    child: NsChild,
    path: PathBuf,
}

impl Dumpcap {
    /// Starts `dumpcap -i ifname -f filter -w path` in `ns` and returns
    /// once the file holds its section header (capture running), within 10 s.
    pub fn start(ns: &Netns, ifname: &str, filter: &str, path: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let mut cmd = Command::new("dumpcap");
        cmd.args(["-q", "-i", ifname, "-f", filter, "-w"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ns.spawn(cmd)?;
        let t0 = Instant::now();
        while std::fs::metadata(path).map_or(0, |m| m.len()) == 0 {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(Error::Invalid(format!(
                    "dumpcap on {ifname} in {} did not start",
                    ns.name()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            path: path.to_owned(),
        })
    }

    /// Stops the capture (SIGTERM, so the file is complete) and returns its path.
    pub fn stop(self) -> Result<PathBuf> {
        self.child.stop(Duration::from_secs(3))?;
        Ok(self.path)
    }
}

/// What tshark made of a capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeneveCheck {
    /// Frames in the file.
    pub frames: usize,
    /// `frame.protocols` of the frames without GENEVE (at most 5 kept).
    pub not_geneve: Vec<String>,
    /// How many frames had no GENEVE layer.
    pub not_geneve_count: usize,
    /// Malformed or erroneous frames: number and `frame.protocols`.
    pub malformed: Vec<String>,
    /// How many of those tshark found so only inside the GENEVE payload
    /// (the dissection went past `geneve:eth`), to tell a broken inner
    /// frame from broken outer headers. Sealed data is labelled 0x88B6,
    /// which tshark shows as data, so ciphertext does not count here.
    pub malformed_inner: usize,
}

fn tshark(args: &[&str], path: &Path) -> Result<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            cmd: format!("tshark -r {} {}", path.display(), args.join(" ")),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: format!("tshark -r {} {}", path.display(), args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Decodes `path` with UDP port 6081 as GENEVE (`-d udp.port==6081,geneve`)
/// and reports every frame that is not GENEVE or that tshark finds
/// malformed or erroneous (`_ws.malformed || _ws.expert.severity >= error`),
/// telling those whose fault lies only in the GENEVE payload apart.
///
/// The application payload inside the tunnel (the tests' random bytes) is
/// not checked: the protocols tshark tries by heuristics on TCP and UDP
/// payloads are turned off (`--disable-protocol`), as one of them (Thrift)
/// took a random TCP segment for a malformed Thrift message.
pub fn geneve_check(path: &Path) -> Result<GeneveCheck> {
    let heur = payload_heuristics()?;
    let mut decode = vec!["-d", "udp.port==6081,geneve"];
    for h in &heur {
        decode.extend(["--disable-protocol", h.as_str()]);
    }
    let with = |rest: &[&'static str]| -> Vec<&str> {
        let mut v = decode.clone();
        v.extend_from_slice(rest);
        v
    };
    let protos = tshark(&with(&["-T", "fields", "-e", "frame.protocols"]), path)?;
    let lines: Vec<&str> = protos.lines().collect();
    let not: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.contains("geneve"))
        .collect();
    let bad = tshark(
        &with(&[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.protocols",
        ]),
        path,
    )?;
    let malformed: Vec<String> = bad
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let malformed_inner = malformed.iter().filter(|l| inner_only(l)).count();
    Ok(GeneveCheck {
        frames: lines.len(),
        not_geneve: not.iter().take(5).map(|s| (*s).to_owned()).collect(),
        not_geneve_count: not.len(),
        malformed,
        malformed_inner,
    })
}

/// The protocols of tshark's enabled heuristic dissectors of TCP and UDP
/// payloads (`tshark -G heuristic-decodes`), each once.
fn payload_heuristics() -> Result<Vec<String>> {
    let cmd = "tshark -G heuristic-decodes";
    let out = Command::new("tshark")
        .args(["-G", "heuristic-decodes"])
        .output()
        .map_err(|source| Error::Spawn {
            cmd: cmd.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: cmd.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(payload_heuristics_in(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `tshark -G heuristic-decodes` (table, protocol, enabled T/F,
/// tab-separated): the protocols enabled on the `tcp` and `udp` tables,
/// sorted, each once.
fn payload_heuristics_in(listing: &str) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (table, name, on) = (f.next()?, f.next()?, f.next()?);
            (matches!(table, "tcp" | "udp") && on.trim() == "T").then_some(name)
        })
        .collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Whether a malformed frame's `frame.protocols` shows the dissection past
/// the GENEVE header into its payload (`...:geneve:eth:...`).
fn inner_only(protocols: &str) -> bool {
    protocols
        .split_once("geneve:eth:")
        .is_some_and(|(_, inner)| !inner.is_empty())
}

/// Frames of `path` matching the display filter `filter` (decoded with UDP
/// 6081 as GENEVE).
pub fn count(path: &Path, filter: &str) -> Result<usize> {
    let out = tshark(
        &[
            "-d",
            "udp.port==6081,geneve",
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
        path,
    )?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// A display filter matching frames that contain `bytes` anywhere
/// (`frame contains 4d:47:...`).
pub fn contains_filter(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("frame contains {}", hex.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inside_the_payload_is_told_apart() {
        assert!(inner_only(
            "7\teth:ethertype:ip:udp:geneve:eth:ethertype:ip:_ws.malformed"
        ));
        assert!(!inner_only("7\teth:ethertype:ip:udp:geneve:_ws.malformed"));
        assert!(!inner_only("7\teth:ethertype:ip:_ws.malformed"));
    }

    #[test]
    fn only_enabled_tcp_and_udp_heuristics_are_turned_off() {
        let listing =
            "tcp\tthrift\tT\ntcp\txml\tF\nudp\tthrift\tT\nudp\tstun\tT\nip\tfoo\tT\nbad line\n";
        assert_eq!(payload_heuristics_in(listing), ["stun", "thrift"]);
    }

    #[test]
    fn contains_filter_is_colon_hex() {
        assert_eq!(contains_filter(b"MG\x00\xff"), "frame contains 4d:47:00:ff");
    }
}
