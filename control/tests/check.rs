//! `mongate check` (`mongate_control::check`): a table of invalid site files
//! and instances, each written to a file and checked with the triangle's
//! other files; every problem is one line naming the file, the line and the
//! field. The shipped examples check clean. No input panics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mongate_control::check::{check_files, check_instance_str};
use mongate_dataplane::config::{Config, ConfigError};

const SITE_A: &str = include_str!("../../docs/examples/triangle/site-a.toml");
const SITE_B: &str = include_str!("../../docs/examples/triangle/site-b.toml");
const SITE_C: &str = include_str!("../../docs/examples/triangle/site-c.toml");
const INSTANCE: &str = include_str!("../../docs/examples/triangle/instance.json");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// A fresh directory of this test process.
fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "mongate-check-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Site,
    Instance,
}

/// One invalid input: `from` (its first occurrence) replaced by `to` in
/// site A's file or the instance; the first problem must be in that file,
/// at the line where `to` is (or `line`), about `field`.
struct Case {
    what: &'static str,
    which: Which,
    from: &'static str,
    to: &'static str,
    field: &'static str,
    /// The problem is in this file (default: the one changed).
    at: Option<Which>,
    /// The problem is at the line of this text's first occurrence in that
    /// file (default: the line where the change starts).
    line_of: Option<&'static str>,
    /// Or at this line.
    line: Option<usize>,
    /// Problems expected in all (both files), if known exactly.
    count: Option<usize>,
}

const fn site(
    what: &'static str,
    from: &'static str,
    to: &'static str,
    field: &'static str,
) -> Case {
    Case {
        what,
        which: Which::Site,
        from,
        to,
        field,
        at: None,
        line_of: None,
        line: None,
        count: Some(1),
    }
}

const fn inst(
    what: &'static str,
    from: &'static str,
    to: &'static str,
    field: &'static str,
) -> Case {
    Case {
        what,
        which: Which::Instance,
        from,
        to,
        field,
        at: None,
        line_of: None,
        line: None,
        count: Some(1),
    }
}

fn cases() -> Vec<Case> {
    vec![
        site(
            "VNI out of range",
            "vni = 4242",
            "vni = 99999999",
            "site.vni",
        ),
        site(
            "LAN prefix with host bits",
            r#"lan_prefixes = ["198.18.0.0/24""#,
            r#"lan_prefixes = ["198.18.0.1/24""#,
            "site.lan_prefixes[0]",
        ),
        site(
            "negative capacity",
            "capacity_mbps = 10.0",
            "capacity_mbps = -1.0",
            "uplinks[0].capacity_mbps",
        ),
        site(
            "bad uplink address",
            r#"local_address = "198.19.128.1""#,
            r#"local_address = "198.19.128.300""#,
            "uplinks[0].local_address",
        ),
        site(
            "unknown backend",
            r#"backend = "af_xdp""#,
            r#"backend = "dpdk""#,
            "uplinks[0].backend",
        ),
        site(
            "duplicate uplink name",
            "name = \"ac\"\ninterface = \"wan1\"",
            "name = \"ab\"\ninterface = \"wan1\"",
            "uplinks[1].name",
        ),
        Case {
            line_of: Some("gateway_mac"),
            ..site(
                "bad next hop MAC",
                r#"capacity_mbps = 10.0
backend = "af_xdp""#,
                r#"capacity_mbps = 10.0
gateway_mac = "02:00:00:00:00"
backend = "af_xdp""#,
                "uplinks[0].gateway_mac",
            )
        },
        site(
            "a gateway address under two peers",
            r#"gateways = ["198.19.129.2""#,
            r#"gateways = ["198.19.128.2""#,
            "peers[1].gateways[0]",
        ),
        site(
            "a peer address that is one of ours",
            r#"gateways = ["198.19.128.2""#,
            r#"gateways = ["198.19.129.1""#,
            "peers[0].gateways[0]",
        ),
        site(
            "a peer address listed twice",
            r#"gateways = ["198.19.128.2", "198.19.130.1"]"#,
            r#"gateways = ["198.19.128.2", "198.19.128.2"]"#,
            "peers[0].gateways[1]",
        ),
        site(
            "overlapping prefixes",
            r#"prefixes = ["198.18.16.0/24""#,
            r#"prefixes = ["198.18.0.0/25""#,
            "peers[0].prefixes[0]",
        ),
        // (C is then unknown wherever it is named: those are reported too.)
        Case {
            count: None,
            ..site(
                "duplicate peer",
                r#"name = "C""#,
                r#"name = "B""#,
                "peers[1].name",
            )
        },
        Case {
            line_of: Some("public_key"),
            ..site(
                "bad public key",
                r#"gateways = ["198.19.128.2", "198.19.130.1"]"#,
                r#"gateways = ["198.19.128.2", "198.19.130.1"]
public_key = "not-base64""#,
                "peers[0].public_key",
            )
        },
        site(
            "class from an unknown site",
            r#"source = "A""#,
            r#"source = "Z""#,
            "classes[0].source",
        ),
        site(
            "unknown overflow action",
            r#"overflow = "drop""#,
            r#"overflow = "discard""#,
            "classes[0].overflow",
        ),
        site(
            "unknown protocol",
            r#"protocol = "udp""#,
            r#"protocol = "quic""#,
            "classes[0].rules[0].protocol",
        ),
        site(
            "empty port range",
            r#"dst_ports = "5000-5099""#,
            r#"dst_ports = "5099-5000""#,
            "classes[0].rules[0].dst_ports",
        ),
        site(
            "duplicate flow id",
            r#"id = "A->C/via-B""#,
            r#"id = "A->C/direct""#,
            "flows[1].id",
        ),
        site(
            "flow of an unknown class",
            r#"class = "A->C""#,
            r#"class = "X->C""#,
            "flows[0].class",
        ),
        site(
            "route with a loop",
            r#"route = ["A", "B", "C"]"#,
            r#"route = ["A", "B", "A"]"#,
            "flows[1].route[2]",
        ),
        site(
            "route from the wrong site",
            r#"route = ["B", "C"]"#,
            r#"route = ["A", "C"]"#,
            "flows[2].route[0]",
        ),
        Case {
            line_of: Some("listen ="),
            ..site(
                "metrics address without a port",
                "# No encryption yet",
                "[metrics]\nlisten = \"127.0.0.1\"\n\n# No encryption yet",
                "metrics.listen",
            )
        },
        Case {
            line_of: Some("listen ="),
            ..site(
                "metrics on port 0",
                "# No encryption yet",
                "[metrics]\nlisten = \"127.0.0.1:0\"\n\n# No encryption yet",
                "metrics.listen",
            )
        },
        site(
            "unknown security mode",
            r#"mode = "off""#,
            r#"mode = "maybe""#,
            "security.mode",
        ),
        Case {
            line_of: Some("session_idle_timeout_seconds"),
            ..site(
                "idle timeout out of range",
                r#"lan_interface = "lan0""#,
                r#"lan_interface = "lan0"
session_idle_timeout_seconds = 0"#,
                "site.session_idle_timeout_seconds",
            )
        },
        site(
            "misspelt key",
            r#"lan_interface = "lan0""#,
            r#"lan_interfaces = "lan0""#,
            "site.lan_interfaces",
        ),
        site("not TOML", "vni = 4242", "vni = 4242 4243", "site.vni"),
        Case {
            what: "config flow not in the instance (and the instance's not in the config)",
            count: Some(2),
            ..site(
                "",
                r#"id = "B->C/via-A""#,
                r#"id = "B->C/via-X""#,
                "flows[3].id",
            )
        },
        Case {
            what: "flow of another class in the instance",
            which: Which::Instance,
            at: Some(Which::Site),
            line_of: Some("class = \"B->C\"\nroute = [\"B\", \"A\", \"C\"]"),
            ..site(
                "",
                r#"{"id": "B->C/via-A", "class": "B->C""#,
                r#"{"id": "B->C/via-A", "class": "A->C""#,
                "flows[3].class",
            )
        },
        inst(
            "negative link capacity",
            r#"{"id": "B-C", "capacity": 5.0}"#,
            r#"{"id": "B-C", "capacity": -5.0}"#,
            "links[2].capacity",
        ),
        inst(
            "unknown link",
            r#"["A-B", "B-C"]"#,
            r#"["A-B", "X-Y"]"#,
            "flows[1].links[1]",
        ),
        inst(
            "a link used twice",
            r#"["A-B", "B-C"]"#,
            r#"["B-C", "B-C"]"#,
            "flows[1].links[1]",
        ),
        inst(
            "loss budget out of range",
            r#""loss_budget": 0.02"#,
            r#""loss_budget": 0.9"#,
            "loss_budget",
        ),
        inst(
            "utility not increasing",
            "[4.0, 8.0]",
            "[0.0, 8.0]",
            "classes[0].utility",
        ),
        inst(
            "flow without links",
            r#"["B-C"]}"#,
            r#"[]}"#,
            "flows[2].links",
        ),
        // (B->C is then unknown to its flows: reported too.)
        Case {
            count: None,
            ..inst(
                "duplicate class",
                r#"{"id": "B->C", "sessions""#,
                r#"{"id": "A->C", "sessions""#,
                "classes[1].id",
            )
        },
        inst(
            "negative sessions (not JSON of the shape)",
            r#""sessions": 4"#,
            r#""sessions": -4"#,
            "classes[0].sessions",
        ),
        inst(
            "unknown key",
            r#""sessions": 4"#,
            r#""sessionz": 4"#,
            "classes[0].sessionz",
        ),
        Case {
            line: Some(3),
            ..inst(
                "not JSON (a comma missing)",
                r#""loss_budget": 0.02,"#,
                r#""loss_budget": 0.02"#,
                "loss_budget",
            )
        },
    ]
}

/// `file:line:column: field: reason`, one line.
fn assert_one_line(e: &ConfigError) {
    let s = e.to_string();
    assert!(!s.contains('\n'), "{s:?}");
    let prefix = format!("{}:{}:{}: {}: ", e.file, e.line, e.column, e.field);
    assert!(s.starts_with(&prefix), "{s:?} vs {prefix:?}");
    assert!(s.len() > prefix.len(), "no reason: {s:?}");
}

#[test]
fn every_invalid_input_is_one_line_naming_file_line_and_field() {
    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for c in &cases {
        let base = match c.which {
            Which::Site => SITE_A,
            Which::Instance => INSTANCE,
        };
        assert!(
            base.contains(c.from),
            "{}: {:?} not in the example",
            c.what,
            c.from
        );
        let text = base.replacen(c.from, c.to, 1);
        let d = scratch();
        let (site, instance) = (d.join("site-a.toml"), d.join("instance.json"));
        let (site_text, inst_text) = match c.which {
            Which::Site => (text.as_str(), INSTANCE),
            Which::Instance => (SITE_A, text.as_str()),
        };
        std::fs::write(&site, site_text).unwrap();
        std::fs::write(&instance, inst_text).unwrap();
        let r = check_files(std::slice::from_ref(&site), Some(&instance));
        let at = c.at.unwrap_or(c.which);
        let (file, at_text) = match at {
            Which::Site => (site.display().to_string(), site_text),
            Which::Instance => (instance.display().to_string(), inst_text),
        };
        let line_at = |t: &str, pat: &str| {
            let i = t
                .find(pat)
                .unwrap_or_else(|| panic!("{}: {pat:?} not found", c.what));
            t[..i].matches('\n').count() + 1
        };
        let line = match (c.line, c.line_of) {
            (Some(l), _) => l,
            (None, Some(pat)) => line_at(at_text, pat),
            // The line where the change starts.
            (None, None) => line_at(base, c.from),
        };
        for p in &r.problems {
            assert_one_line(p);
        }
        let lines: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        let hit = r
            .problems
            .iter()
            .find(|p| p.file == file && p.field == c.field && p.line == line);
        assert!(
            hit.is_some(),
            "{}: want {file}:{line}: {}: ..., got {lines:#?}",
            c.what,
            c.field
        );
        if let Some(n) = c.count {
            assert_eq!(r.problems.len(), n, "{}: {lines:#?}", c.what);
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Several problems in one file are all reported, each at its line.
#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = SITE_A
        .replacen("vni = 4242", "vni = -1", 1)
        .replacen("capacity_mbps = 10.0", "capacity_mbps = 0.0", 1)
        .replacen(r#"overflow = "drop""#, r#"overflow = "discard""#, 1)
        .replacen(r#"route = ["B", "C"]"#, r#"route = ["B", "B"]"#, 1);
    let errs = Config::check_toml_str(&text, "a.toml").unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "site.vni",
            "uplinks[0].capacity_mbps",
            "classes[0].overflow",
            "flows[2].route[1]"
        ],
        "{errs:#?}"
    );
    assert!(errs.windows(2).all(|w| w[0].line < w[1].line));
    // The loader's one error is the first of them.
    assert_eq!(Config::from_toml_str(&text, "a.toml").unwrap_err(), errs[0]);
}

/// The shipped examples check clean: the triangle's three sites with its
/// instance (together: one VNI, the same classes and flows, every peer as
/// that site describes itself), the paper's triangle pair, the annotated
/// site file alone.
#[test]
fn the_shipped_examples_check_clean() {
    let ex = examples();
    let t = ex.join("triangle");
    let sites: Vec<PathBuf> = ["site-a.toml", "site-b.toml", "site-c.toml"]
        .iter()
        .map(|f| t.join(f))
        .collect();
    let r = check_files(&sites, Some(&t.join("instance.json")));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.ok.len(), 4, "{:?}", r.ok);
    let r = check_files(
        &[ex.join("triangle-paper-site-a.toml")],
        Some(&ex.join("triangle-paper.json")),
    );
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    let r = check_files(&[ex.join("site-a.toml")], None);
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
}

/// Sites that do not agree with each other: each disagreement at its line.
#[test]
fn sites_are_checked_against_each_other() {
    let d = scratch();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let a = write("a.toml", SITE_A);
    // B thinks A's second gateway is 198.19.129.9 and has another VNI.
    let b_text = SITE_B.replacen("vni = 4242", "vni = 4243", 1).replacen(
        r#""198.19.128.1", "198.19.129.1""#,
        r#""198.19.128.1", "198.19.129.9""#,
        1,
    );
    let b = write("b.toml", &b_text);
    let c = write(
        "c.toml",
        &SITE_C.replacen(
            r#"route = ["A", "B", "C"]"#,
            r#"route = ["A", "C", "B"]"#,
            1,
        ),
    );
    let r = check_files(&[a, b.clone(), c.clone()], None);
    let got: Vec<(String, String)> = r
        .problems
        .iter()
        .map(|p| {
            assert_one_line(p);
            (
                Path::new(&p.file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p.field.clone(),
            )
        })
        .collect();
    for want in [("b.toml", "site.vni"), ("b.toml", "peers[0].gateways[1]")] {
        assert!(
            got.iter().any(|(f, x)| f == want.0 && x == want.1),
            "{want:?} not in {got:?}"
        );
    }
    // C's route of A->C/via-B is not A's (and, as a file alone, invalid).
    assert!(got.iter().any(|(f, _)| f == "c.toml"), "{got:?}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The checker matches what `mongate-control run` refuses (`SiteMap`).
#[cfg(feature = "solver")]
#[test]
fn cross_file_problems_are_what_the_control_refuses() {
    use mongate_control::pfo::Instance;
    use mongate_control::run::SiteMap;
    let cfg = Config::from_toml_str(SITE_A, "a.toml").unwrap();
    let good = Instance::from_json(INSTANCE).unwrap();
    assert!(SiteMap::new(&good, &cfg).is_ok());
    for (from, to) in [
        (
            r#"{"id": "B->C/via-A", "class": "B->C""#,
            r#"{"id": "B->C/via-A", "class": "A->C""#,
        ),
        (r#"{"id": "B->C/via-A""#, r#"{"id": "B->C/via-X""#),
    ] {
        let text = INSTANCE.replacen(from, to, 1);
        let i = Instance::from_json(&text).unwrap();
        assert!(SiteMap::new(&i, &cfg).is_err(), "{to}");
        let d = scratch();
        std::fs::write(d.join("s.toml"), SITE_A).unwrap();
        std::fs::write(d.join("i.json"), &text).unwrap();
        let r = check_files(&[d.join("s.toml")], Some(&d.join("i.json")));
        assert!(!r.problems.is_empty(), "{to}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// No input panics: every prefix of the example files, and bytes flipped
/// through them.
#[test]
fn no_input_panics() {
    for (text, site) in [(SITE_A, true), (INSTANCE, false)] {
        let b = text.as_bytes();
        let mut inputs: Vec<Vec<u8>> = (0..b.len()).step_by(5).map(|n| b[..n].to_vec()).collect();
        for i in (0..b.len()).step_by(7) {
            for x in [b'"', b'[', b'{', b'\n', b'=', b',', 0xff] {
                let mut v = b.to_vec();
                v[i] = x;
                inputs.push(v);
            }
        }
        for v in inputs {
            let t = String::from_utf8_lossy(&v);
            if site {
                if let Err(errs) = Config::check_toml_str(&t, "x.toml") {
                    assert!(!errs.is_empty());
                    errs.iter().for_each(assert_one_line_lenient);
                }
            } else if let Err(errs) = check_instance_str(&t, "x.json") {
                assert!(!errs.is_empty());
                errs.iter().for_each(assert_one_line_lenient);
            }
        }
    }
}

/// One line, starting with the file (the line may be 0 for the whole file).
fn assert_one_line_lenient(e: &ConfigError) {
    let s = e.to_string().replace(['\n', '\r'], " ");
    assert!(s.starts_with(&e.file), "{s}");
    assert!(!e.field.is_empty(), "{s}");
}
