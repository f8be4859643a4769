use proptest::prelude::*;

use super::*;
use crate::plan::{PlanField, PlanFile};

const EXAMPLE: &str = include_str!("../../../docs/examples/site-a.toml");
const FILE: &str = "site-a.toml";

fn example() -> Config {
    Config::from_toml_str(EXAMPLE, FILE).expect("example loads")
}

/// Replaces `from` (which must occur) by `to` in the example, loads it and
/// checks the error names the file, the line holding `needle` (in the edited
/// text) and `field`.
#[track_caller]
fn expect_err(from: &str, to: &str, needle: &str, field: &str) -> ConfigError {
    assert!(EXAMPLE.contains(from), "`{from}` not in example");
    let text = EXAMPLE.replacen(from, to, 1);
    let at = text.find(needle).expect("needle in edited text");
    let line = text[..at].matches('\n').count() + 1;
    let e = Config::from_toml_str(&text, FILE).expect_err("must fail");
    assert_eq!(e.file, FILE, "{e}");
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.line, line, "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("{FILE}:{line}:")), "{shown}");
    assert!(shown.contains(field), "{shown}");
    e
}

#[test]
fn example_loads() {
    let c = example();
    assert_eq!(c.site.name, "A");
    assert_eq!(c.site.vni, 4242);
    assert_eq!(c.uplinks.len(), 2);
    assert_eq!(c.uplinks[0].backend, Backend::AfXdp);
    assert_eq!(
        c.uplinks[0].gateway_mac.map(|m| m.to_string()).as_deref(),
        Some("02:00:00:00:64:fe")
    );
    assert_eq!(c.uplinks[1].capacity_mbps, 10.0);
    assert_eq!(c.peers[1].gateways.len(), 2);
    assert_eq!(c.classes.len(), 3);
    let r = &c.classes[0].rules[0];
    assert_eq!(r.protocol, Some(17));
    assert_eq!(r.dst_ports, Some(PortRange { lo: 5000, hi: 5999 }));
    assert_eq!(r.dscp, vec![34, 46]);
    assert_eq!(
        c.classes[0].rules[1].dst_ports,
        Some(PortRange { lo: 5004, hi: 5004 })
    );
    assert_eq!(c.classes[1].overflow, Overflow::Drop);
    assert_eq!(c.flows[1].route, vec!["A", "B", "C"]);
    let p = c.plan.as_ref().expect("plan");
    assert_eq!(p.epoch, 1);
    assert_eq!(p.sessions_of(c.class_index("video-ac").unwrap()), 3);
    assert_eq!(p.sessions_of(c.class_index("telemetry-bc").unwrap()), 0);
    assert_eq!(p.flow(c.flow_index("video-ac-via-b").unwrap()).1, 0.75);
}

#[test]
fn example_loads_from_disk() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/site-a.toml");
    assert_eq!(Config::load(&path).expect("loads"), example());
    let e = Config::load(std::path::Path::new("/nonexistent/site.toml")).expect_err("missing file");
    assert_eq!((e.line, e.file.as_str()), (0, "/nonexistent/site.toml"));
}

#[test]
fn round_trip() {
    let c = example();
    let text = c.to_toml_string().expect("serializes");
    let back = Config::from_toml_str(&text, "rt.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, c);
    let mut no_plan = c.clone();
    no_plan.plan = None;
    let back =
        Config::from_toml_str(&no_plan.to_toml_string().expect("ser"), "rt.toml").expect("loads");
    assert_eq!(back, no_plan);
}

const KEYED: &str = "private_key_file = \"/etc/mongate/site-a.key\"";

#[test]
fn security_off_and_required() {
    let c = example();
    assert_eq!(c.security.mode, SecurityMode::Off);
    assert!(!c.security.required());
    assert_eq!(c.security.rekey_after_ns, 120 * crate::sys::SEC);
    assert_eq!(c.security.rekey_after_packets, 1 << 60);
    let kb = c.peers[0].public_key.expect("B's key");
    assert_eq!(
        encode_key(&kb),
        "v8uipXyLlwVC8gFZA83Z96K7k9920mjToVSqoNFVchs="
    );
    let text = EXAMPLE.replacen("mode = \"off\"", KEYED, 1).replacen(
        "# rekey_after_seconds = 120",
        "rekey_after_seconds = 30\nrekey_after_packets = 1000",
        1,
    );
    let k = Config::from_toml_str(&text, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert!(k.security.required());
    assert_eq!(
        k.security.private_key_file.as_deref(),
        Some(std::path::Path::new("/etc/mongate/site-a.key"))
    );
    assert_eq!(k.security.rekey_after_ns, 30 * crate::sys::SEC);
    assert_eq!(k.security.rekey_after_packets, 1000);
    assert_eq!(k.peers[1].public_key, c.peers[1].public_key);
    // Round trip of the keyed form.
    let back = Config::from_toml_str(&k.to_toml_string().expect("ser"), "rt.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, k);
    assert_eq!(back.security, k.security);
}

#[test]
fn err_security() {
    // No [security] table at all.
    let start = EXAMPLE.find("[security]").unwrap();
    let end = EXAMPLE[start..].find("\n\n").unwrap() + start;
    let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let e = Config::from_toml_str(&text, FILE).expect_err("no [security]");
    assert_eq!(e.field, "security");
    assert!(e.message.contains("mode = \"off\""), "{e}");
    // Neither keys nor mode = "off".
    let e = expect_err(
        "mode = \"off\"",
        "rekey_after_seconds = 100",
        "[security]",
        "security.private_key_file",
    );
    assert!(e.message.contains("mode = \"off\""), "{e}");
    expect_err(
        "mode = \"off\"",
        "mode = \"maybe\"",
        "\"maybe\"",
        "security.mode",
    );
    expect_err(
        "mode = \"off\"",
        "mode = \"off\"\nrekey_after_seconds = 151",
        "151",
        "security.rekey_after_seconds",
    );
    expect_err(
        "mode = \"off\"",
        "mode = \"off\"\nrekey_after_seconds = 0",
        "= 0",
        "security.rekey_after_seconds",
    );
    expect_err(
        "mode = \"off\"",
        "mode = \"off\"\nrekey_after_packets = 1152921504606846977",
        "1152921504606846977",
        "security.rekey_after_packets",
    );
    expect_err(
        "mode = \"off\"",
        "private_key_file = \" \"",
        "\" \"",
        "security.private_key_file",
    );
    // A malformed key is refused even while security is off.
    let e = expect_err(
        "v8uipXyLlwVC8gFZA83Z96K7k9920mjToVSqoNFVchs=",
        "v8uipXyLlwVC8gFZA83Z96K7k9920mjToVSqoNFVch=",
        "v8uip",
        "peers[0].public_key",
    );
    assert!(e.message.contains("invalid public key"), "{e}");
}

#[test]
fn err_peer_without_public_key_when_required() {
    let keyed = EXAMPLE.replacen("mode = \"off\"", KEYED, 1);
    let from = "public_key = \"Ny608GeFLLwNdFMu/rzIbfL1qnd+rnXwxh5UCjyJFTA=\"\n";
    assert!(keyed.contains(from));
    let text = keyed.replacen(from, "", 1);
    let e = Config::from_toml_str(&text, FILE).expect_err("C has no key");
    assert_eq!(e.field, "peers[1].public_key");
    let c_at = text.find("name = \"C\"").unwrap();
    let line = text[..c_at].matches('\n').count() + 1;
    assert!(e.line <= line && e.line + 2 >= line, "{e}");
    // Off: the same file loads.
    let off = EXAMPLE.replacen(from, "", 1);
    assert_eq!(
        Config::from_toml_str(&off, FILE).unwrap().peers[1].public_key,
        None
    );
}

#[test]
fn plan_standalone_and_json() {
    let cfg = example();
    let text = "epoch = 9\n[[classes]]\nid = \"bulk-ac\"\nsessions = 4\n[[flows]]\nid = \"bulk-ac-direct\"\nrate_mbps = 1\nweight = 2\n";
    let p = PlanFile::from_toml_str(text, "plan.toml").expect("parses");
    assert_eq!(p.epoch, 9);
    let t = p.resolve(&cfg).expect("resolves");
    assert_eq!((t.epoch, t.sessions_of(1), t.flow(2)), (9, 4, (1.0, 2.0)));
    let json = serde_json::to_string(&p).expect("json");
    assert_eq!(serde_json::from_str::<PlanFile>(&json).expect("back"), p);

    let e = PlanFile::from_toml_str("epoch = -1\n", "plan.toml").expect_err("negative epoch");
    assert_eq!((e.line, e.field.as_str()), (1, "epoch"));
    let e =
        PlanFile::from_toml_str("epoch = 1\n\n[[flows]]\nid = 3\n", "plan.toml").expect_err("type");
    assert_eq!(e.line, 4, "{e}");
    assert_eq!(e.field, "flows.id", "{e}");

    let mut bad = p.clone();
    bad.flows[0].id = "nope".into();
    let e = bad.resolve(&cfg).expect_err("unknown flow");
    assert_eq!(e.at, PlanField::Flow(0, "id"));
    assert_eq!(e.field("plan."), "plan.flows[0].id");
    let mut bad = p.clone();
    bad.flows[0].weight = f64::NAN;
    assert_eq!(
        bad.resolve(&cfg).map_err(|e| e.at),
        Err(PlanField::Flow(0, "weight"))
    );
    let mut bad = p.clone();
    bad.classes.push(bad.classes[0].clone());
    assert_eq!(
        bad.resolve(&cfg).map_err(|e| e.at),
        Err(PlanField::Class(1, "id"))
    );
    let mut bad = p;
    bad.flows.clear();
    assert_eq!(
        bad.resolve(&cfg).map_err(|e| e.at),
        Err(PlanField::Class(0, "sessions"))
    );
}

#[test]
fn err_vni_range() {
    expect_err("vni = 4242", "vni = 16777216", "vni =", "site.vni");
    expect_err("vni = 4242", "vni = -1", "vni =", "site.vni");
}

#[test]
fn session_idle_timeout_defaults_parses_and_round_trips() {
    let c = example();
    assert_eq!(c.site.session_idle_timeout_seconds, None);
    assert_eq!(
        c.site.session_idle_timeout_ns(),
        u64::from(DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS) * crate::sys::SEC
    );
    assert_eq!(
        c.site.session_idle_timeout_ns(),
        crate::classify::DEFAULT_IDLE_TIMEOUT_NS,
        "one default"
    );
    let text = EXAMPLE.replacen(
        "# session_idle_timeout_seconds = 30",
        "session_idle_timeout_seconds = 5",
        1,
    );
    let k = Config::from_toml_str(&text, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(k.site.session_idle_timeout_seconds, Some(5));
    assert_eq!(k.site.session_idle_timeout_ns(), 5 * crate::sys::SEC);
    let ser = k.to_toml_string().expect("ser");
    assert!(ser.contains("session_idle_timeout_seconds = 5"), "{ser}");
    let back = Config::from_toml_str(&ser, "rt.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, k);
    let max = EXAMPLE.replacen(
        "# session_idle_timeout_seconds = 30",
        &format!("session_idle_timeout_seconds = {MAX_SESSION_IDLE_TIMEOUT_SECONDS}"),
        1,
    );
    assert!(Config::from_toml_str(&max, FILE).is_ok());
}

#[test]
fn err_session_idle_timeout() {
    let from = "# session_idle_timeout_seconds = 30";
    for bad in ["0", "-5", "86401", "4294967296"] {
        let e = expect_err(
            from,
            &format!("session_idle_timeout_seconds = {bad}"),
            "session_idle_timeout_seconds =",
            "site.session_idle_timeout_seconds",
        );
        assert!(e.message.contains("1..=86400"), "{e}");
    }
    // Not an integer: the parser's type error, on the same line and field.
    expect_err(
        from,
        "session_idle_timeout_seconds = \"30s\"",
        "session_idle_timeout_seconds =",
        "site.session_idle_timeout_seconds",
    );
}

#[test]
fn err_empty_site_name() {
    expect_err("name = \"A\"", "name = \" \"", "name = \" \"", "site.name");
}

#[test]
fn err_invalid_lan_prefix() {
    let e = expect_err(
        "\"198.18.10.0/24\"",
        "\"198.18.10.1/24\"",
        "lan_prefixes",
        "site.lan_prefixes[0]",
    );
    assert!(e.message.contains("host bits"), "{e}");
    expect_err(
        "\"2001:db8:a::/48\"",
        "\"2001:db8:a::/129\"",
        "lan_prefixes",
        "site.lan_prefixes[1]",
    );
}

#[test]
fn err_capacity_not_positive() {
    expect_err(
        "capacity_mbps = 10 ",
        "capacity_mbps = 0 ",
        "capacity_mbps = 0",
        "uplinks[0].capacity_mbps",
    );
    expect_err(
        "capacity_mbps = 10.0",
        "capacity_mbps = -1.0",
        "capacity_mbps = -1",
        "uplinks[1].capacity_mbps",
    );
    expect_err(
        "capacity_mbps = 10.0",
        "capacity_mbps = nan",
        "capacity_mbps = nan",
        "uplinks[1].capacity_mbps",
    );
}

#[test]
fn err_duplicate_uplink() {
    expect_err(
        "name = \"isp2\"",
        "name = \"isp1\"",
        "name = \"isp1\"\ninterface = \"up1\"",
        "uplinks[1].name",
    );
}

#[test]
fn err_unknown_backend() {
    expect_err(
        "backend = \"io_uring\"",
        "backend = \"dpdk\"",
        "\"dpdk\"",
        "uplinks[1].backend",
    );
}

#[test]
fn err_bad_mac_and_address() {
    expect_err(
        "\"02:00:00:00:64:fe\"",
        "\"02:00:00:00:64\"",
        "gateway_mac",
        "uplinks[0].gateway_mac",
    );
    expect_err(
        "\"198.18.101.1\"",
        "\"198.18.101\"",
        "198.18.101\"",
        "uplinks[1].local_address",
    );
    expect_err(
        "\"198.18.100.254\"",
        "\"2001:db8::1\"",
        "next_hop",
        "uplinks[0].next_hop",
    );
}

#[test]
fn err_overlapping_prefixes() {
    let e = expect_err(
        "[\"198.18.20.0/24\"]",
        "[\"198.18.10.128/25\"]",
        "198.18.10.128/25",
        "peers[0].prefixes[0]",
    );
    assert!(e.message.contains("overlaps"), "{e}");
}

#[test]
fn err_duplicate_peer() {
    expect_err(
        "name = \"C\"",
        "name = \"B\"",
        "name = \"B\"\nprefixes = [\"198.18.30",
        "peers[1].name",
    );
    expect_err(
        "name = \"B\"",
        "name = \"A\"",
        "name = \"A\"\nprefixes",
        "peers[0].name",
    );
}

#[test]
fn err_duplicate_gateway() {
    expect_err(
        "\"198.18.102.1\", \"198.18.103.1\"",
        "\"198.18.102.1\", \"198.18.102.1\"",
        "gateways = [\"198.18.102.1\"",
        "peers[0].gateways[1]",
    );
    expect_err(
        "gateways = [\"198.18.102.1\", \"198.18.103.1\"]",
        "gateways = []",
        "gateways = []",
        "peers[0].gateways",
    );
}

#[test]
fn err_class_unknown_site() {
    expect_err(
        "destination = \"C\"\ntype = \"video\"",
        "destination = \"D\"\ntype = \"video\"",
        "\"D\"",
        "classes[0].destination",
    );
    expect_err(
        "source = \"A\"\ndestination = \"C\"\ntype = \"bulk\"",
        "source = \"C\"\ndestination = \"C\"\ntype = \"bulk\"",
        "destination = \"C\"\ntype = \"bulk\"",
        "classes[1].destination",
    );
}

#[test]
fn err_duplicate_class() {
    expect_err(
        "id = \"bulk-ac\"\nsource",
        "id = \"video-ac\"\nsource",
        "id = \"video-ac\"\nsource = \"A\"\ndestination = \"C\"\ntype = \"bulk\"",
        "classes[1].id",
    );
}

#[test]
fn err_bad_port_range() {
    expect_err(
        "\"5000-5999\"",
        "\"5999-5000\"",
        "dst_ports",
        "classes[0].rules[0].dst_ports",
    );
    expect_err(
        "\"5000-5999\"",
        "\"5000-65536\"",
        "dst_ports",
        "classes[0].rules[0].dst_ports",
    );
    expect_err(
        "\"5000-5999\"",
        "\"http\"",
        "dst_ports",
        "classes[0].rules[0].dst_ports",
    );
    expect_err(
        "protocol = \"udp\"\ndst_ports = 5004",
        "protocol = \"icmp\"\ndst_ports = 5004",
        "dst_ports = 5004",
        "classes[0].rules[1].dst_ports",
    );
}

#[test]
fn err_bad_protocol_and_dscp() {
    expect_err(
        "protocol = \"tcp\" ",
        "protocol = 300 ",
        "protocol = 300",
        "classes[1].rules[0].protocol",
    );
    expect_err(
        "dscp = [34, 46]",
        "dscp = [34, 64]",
        "dscp",
        "classes[0].rules[0].dscp[1]",
    );
    expect_err(
        "dscp = [34, 46]",
        "dscp = [34, 34]",
        "dscp",
        "classes[0].rules[0].dscp[1]",
    );
}

#[test]
fn err_rule_prefix_outside_destination() {
    expect_err(
        "[\"198.18.30.0/25\"]",
        "[\"198.18.20.0/25\"]",
        "198.18.20.0/25\"]",
        "classes[0].rules[0].dst_prefixes[0]",
    );
}

#[test]
fn err_unknown_overflow() {
    expect_err(
        "overflow = \"drop\"",
        "overflow = \"queue\"",
        "\"queue\"",
        "classes[1].overflow",
    );
}

#[test]
fn err_flow_unknown_class() {
    expect_err(
        "class = \"bulk-ac\"",
        "class = \"nope\"",
        "\"nope\"",
        "flows[2].class",
    );
}

#[test]
fn err_route_unknown_site_and_loop() {
    expect_err(
        "route = [\"A\", \"B\", \"C\"]",
        "route = [\"A\", \"X\", \"C\"]",
        "\"X\"",
        "flows[1].route[1]",
    );
    expect_err(
        "route = [\"A\", \"B\", \"C\"]",
        "route = [\"A\", \"B\", \"A\", \"C\"]",
        "\"A\", \"B\", \"A\"",
        "flows[1].route[2]",
    );
}

#[test]
fn err_route_wrong_ends() {
    let e = expect_err(
        "route = [\"A\", \"B\", \"C\"]",
        "route = [\"B\", \"A\", \"C\"]",
        "\"B\", \"A\"",
        "flows[1].route[0]",
    );
    assert!(e.message.contains("source"), "{e}");
    let e = expect_err(
        "route = [\"A\", \"B\", \"C\"]",
        "route = [\"A\", \"B\"]",
        "route = [\"A\", \"B\"]",
        "flows[1].route[1]",
    );
    assert!(e.message.contains("destination"), "{e}");
    expect_err(
        "route = [\"A\", \"B\", \"C\"]",
        "route = [\"A\"]",
        "route = [\"A\"]",
        "flows[1].route",
    );
}

#[test]
fn err_duplicate_flow() {
    expect_err(
        "id = \"bulk-ac-direct\"\nclass",
        "id = \"video-ac-direct\"\nclass",
        "id = \"video-ac-direct\"\nclass = \"bulk-ac\"",
        "flows[2].id",
    );
}

#[test]
fn err_plan_unknown_refs() {
    expect_err(
        "id = \"bulk-ac\"\nsessions",
        "id = \"nope\"\nsessions",
        "\"nope\"",
        "plan.classes[1].id",
    );
    expect_err(
        "id = \"bulk-ac-direct\"\nrate_mbps",
        "id = \"nope\"\nrate_mbps",
        "\"nope\"",
        "plan.flows[2].id",
    );
}

#[test]
fn err_plan_values() {
    expect_err(
        "rate_mbps = 1.0",
        "rate_mbps = -1.0",
        "rate_mbps = -1",
        "plan.flows[1].rate_mbps",
    );
    expect_err(
        "weight = 0.75",
        "weight = inf",
        "weight = inf",
        "plan.flows[1].weight",
    );
    expect_err(
        "sessions = 10",
        "sessions = -3",
        "sessions = -3",
        "plan.classes[1].sessions",
    );
    expect_err("epoch = 1", "epoch = -1", "epoch = -1", "plan.epoch");
    expect_err(
        "rate_mbps = 0.3",
        "rate_mbps = 0.0",
        "sessions = 10",
        "plan.classes[1].sessions",
    );
}

#[test]
fn err_toml_level() {
    let e = expect_err(
        "backend = \"af_xdp\"",
        "backend = \"af_xdp\"\nbakend = 1",
        "bakend",
        "uplinks.bakend",
    );
    assert!(e.message.contains("unknown field"), "{e}");
    expect_err("vni = 4242", "vni = \"x\"", "vni = \"x\"", "site.vni");
    expect_err("epoch = 1", "epoch = ", "epoch = ", "plan.epoch");
}

#[test]
fn err_missing_field_names_it() {
    let text = EXAMPLE.replacen("interface = \"up1\"\n", "", 1);
    let e = Config::from_toml_str(&text, FILE).expect_err("missing");
    assert_eq!(e.field, "uplinks.interface", "{e}");
    assert!(
        e.line > 0 && e.to_string().starts_with("site-a.toml:"),
        "{e}"
    );
}

#[test]
fn err_class_without_rules() {
    let text = EXAMPLE.replacen("[[classes.rules]]\nprotocol = \"tcp\"", "", 1);
    let e = Config::from_toml_str(&text, FILE).expect_err("no rules");
    assert_eq!(e.field, "classes[1].rules", "{e}");
    assert!(e.line > 0, "{e}");
}

proptest! {
    #[test]
    fn loader_never_panics(s in ".{0,400}") {
        let _ = Config::from_toml_str(&s, "x.toml");
        let _ = PlanFile::from_toml_str(&s, "x.toml");
    }

    #[test]
    fn loader_never_panics_on_edited_example(at in 0usize..EXAMPLE.len(), cut in 0usize..40, ins in "[\\[\\]=\"0-9a-z.:/ \n-]{0,12}") {
        let mut t: Vec<u8> = EXAMPLE.as_bytes().to_vec();
        let end = (at + cut).min(t.len());
        t.splice(at..end, ins.bytes());
        let t = String::from_utf8_lossy(&t);
        if let Err(e) = Config::from_toml_str(&t, "x.toml") {
            prop_assert!(e.line <= t.lines().count() + 1);
        }
    }
}

#[test]
fn the_metrics_table_is_optional_and_checked() {
    let base = include_str!("../../../docs/examples/triangle/site-a.toml");
    let c = Config::from_toml_str(base, "a.toml").expect("example");
    assert_eq!(c.metrics, None);
    let with = base.replacen(
        "[security]",
        "[metrics]\nlisten = \"127.0.0.1:9464\"\n\n[security]",
        1,
    );
    let c = Config::from_toml_str(&with, "a.toml").expect("with metrics");
    assert_eq!(
        c.metrics.as_ref().map(|m| m.listen.to_string()),
        Some("127.0.0.1:9464".to_string())
    );
    // It survives the file's round trip.
    let back = Config::from_toml_str(&c.to_toml_string().expect("ser"), "rt.toml").expect("rt");
    assert_eq!(back.metrics, c.metrics);
    for (bad, why) in [
        ("nowhere", "invalid address"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1", "invalid address"),
    ] {
        let t = base.replacen(
            "[security]",
            &format!("[metrics]\nlisten = \"{bad}\"\n\n[security]"),
            1,
        );
        let e = Config::from_toml_str(&t, "a.toml")
            .expect_err(bad)
            .to_string();
        assert!(
            e.contains("metrics.listen") && e.contains(why),
            "{bad}: {e}"
        );
    }
}

// ---- reload: what may change while running ----

fn edited(from: &str, to: &str) -> Config {
    assert!(EXAMPLE.contains(from), "{from:?} not in the example");
    Config::from_toml_str(&EXAMPLE.replacen(from, to, 1), FILE).expect("edited example")
}

#[test]
fn reload_of_the_same_file_changes_nothing() {
    let c = example();
    let live = super::reload_changes(&c, &example(), true, 0).expect("same file");
    assert!(live.is_empty());
    assert_eq!(live.describe(), "nothing changed");
}

#[test]
fn reload_applies_idle_timeout_and_overflow_in_place() {
    let c = example();
    let mut new = edited("overflow = \"drop\"", "overflow = \"best_effort\"");
    new.site.session_idle_timeout_seconds = Some(90);
    let live = super::reload_changes(&c, &new, false, 0).expect("live changes");
    assert_eq!(live.idle_timeout_ns, Some(90 * crate::sys::SEC));
    let ov = live.overflow.expect("overflow changed");
    assert_eq!(ov.len(), c.classes.len());
    assert!(ov.iter().filter(|o| **o == Overflow::BestEffort).count() > 1);
    assert!(live.host_caps.is_none() && live.plan.is_none());
}

#[test]
fn reload_refuses_every_restart_only_change_with_its_name() {
    let c = example();
    let mut new = c.clone();
    new.site.vni += 1;
    new.uplinks[0].capacity_mbps += 1.0;
    new.peers.pop();
    let why = super::reload_changes(&c, &new, true, 0).expect_err("refused");
    assert_eq!(why.len(), 3, "{why:?}");
    for (w, name) in why.iter().zip(["[site] vni", "[[uplinks]]", "[[peers]]"]) {
        assert!(w.starts_with(name) && w.contains("restart"), "{w}");
    }
    // A class gaining a per-host cap needs the table sized at start.
    let mut capped = c.clone();
    capped.classes[0].max_sessions_per_host = Some(2);
    let why = super::reload_changes(&c, &capped, true, 0).expect_err("refused");
    assert!(why[0].contains("max_sessions_per_host"), "{why:?}");
    // ... but a class that had one may change it.
    let mut capped3 = capped.clone();
    capped3.classes[0].max_sessions_per_host = Some(3);
    let live = super::reload_changes(&capped, &capped3, true, 0).expect("cap change");
    assert_eq!(live.host_caps.expect("caps")[0], 3);
}

#[test]
fn reload_takes_a_file_plan_only_without_a_control_and_only_newer() {
    let c = example();
    let epoch = c.plan.as_ref().expect("example has a plan").epoch;
    let mut newer = c.clone();
    newer.plan.as_mut().unwrap().epoch = epoch + 1;
    let live = super::reload_changes(&c, &newer, true, epoch).expect("newer plan");
    assert_eq!(live.plan.expect("plan").epoch, epoch + 1);
    let why = super::reload_changes(&c, &newer, false, epoch).expect_err("control");
    assert!(why[0].contains("control"), "{why:?}");
    let why = super::reload_changes(&c, &newer, true, epoch + 5).expect_err("older");
    assert!(why[0].contains("not newer"), "{why:?}");
}

/// The peer count is bounded (key slots, and the plan's peers × peers
/// detour table): a file with one peer too many is refused with an error
/// naming `peers` at the first peer beyond the limit; the limit itself loads.
#[test]
fn err_too_many_peers() {
    let with_extra = |extra: u32| {
        let mut text = EXAMPLE.to_owned();
        for i in 0..extra {
            // 198.19.x.y/32 prefixes and 198.19.128+ gateways: unique, no overlap with the example.
            let (hi, lo) = (i / 256, i % 256);
            text.push_str(&format!(
                "\n[[peers]]\nname = \"P{i}\"\nprefixes = [\"198.19.{hi}.{lo}/32\"]\ngateways = [\"198.19.{}.{lo}\"]\n",
                128 + hi
            ));
        }
        text
    };
    let existing = u32::try_from(example().peers.len()).expect("few");
    let limit = crate::secure::MAX_PEERS;
    let at_limit = Config::from_toml_str(&with_extra(limit - existing), FILE).expect("loads");
    assert_eq!(at_limit.peers.len(), limit as usize);
    let text = with_extra(limit - existing + 1);
    let e = Config::from_toml_str(&text, FILE).expect_err("one peer too many");
    assert_eq!(e.field, "peers", "{e}");
    assert!(e.message.contains(&format!("at most {limit}")), "{e}");
    let first_beyond = format!("name = \"P{}\"", limit - existing);
    let at = text.find(&first_beyond).expect("the peer beyond the limit");
    assert_eq!(e.line, text[..at].matches('\n').count(), "{e}");
}

// ---- [montra]: the controllers' and pacers' tunables ----

const MONTRA_EXAMPLE: &str = "# [montra]\n# near_target_gain = 1.5";

#[test]
fn montra_defaults_are_the_dataplanes_and_the_table_round_trips() {
    let c = example();
    assert!(c.montra.is_default());
    let s = crate::overlay::Settings::default();
    let mut applied = crate::overlay::Settings::default();
    c.montra.apply(&mut applied);
    assert_eq!(applied.controller.near_max_gain, s.controller.near_max_gain);
    assert_eq!(applied.ramp, s.ramp);
    assert_eq!(applied.cap_factor, s.cap_factor);
    assert_eq!(applied.best_effort_pps, s.best_effort_pps);
    assert!(
        !c.to_toml_string().unwrap().contains("[montra]"),
        "defaults are not written"
    );
    // Integers and floats, each key to its setting.
    let k = edited(
        MONTRA_EXAMPLE,
        "[montra]\nnear_target_gain = 1\nramp = 0.1\ncap_factor = 3\nbest_effort_mbps = 2.5",
    );
    let m = k.montra;
    assert_eq!(
        (m.near_target_gain, m.ramp, m.cap_factor, m.best_effort_mbps),
        (1.0, 0.1, 3.0, 2.5)
    );
    let mut applied = crate::overlay::Settings::default();
    m.apply(&mut applied);
    assert_eq!(applied.controller.near_max_gain, 1.0);
    assert_eq!(applied.ramp, 0.1);
    assert_eq!(applied.cap_factor, 3.0);
    assert_eq!(applied.best_effort_pps, 250.0);
    let ser = k.to_toml_string().expect("ser");
    assert!(ser.contains("[montra]"), "{ser}");
    let back = Config::from_toml_str(&ser, "rt.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, k);
    // One key: the others keep their defaults.
    let one = edited(MONTRA_EXAMPLE, "[montra]\nbest_effort_mbps = 10");
    assert_eq!(one.montra.best_effort_mbps, 10.0);
    assert_eq!(one.montra.ramp, s.ramp);
    // The ends of every range are accepted.
    for (key, (lo, hi)) in [
        ("near_target_gain", MONTRA_NEAR_TARGET_GAIN),
        ("ramp", MONTRA_RAMP),
        ("cap_factor", MONTRA_CAP_FACTOR),
        ("best_effort_mbps", MONTRA_BEST_EFFORT_MBPS),
    ] {
        for v in [lo, hi] {
            let m = edited(MONTRA_EXAMPLE, &format!("[montra]\n{key} = {v:?}")).montra;
            let got = match key {
                "near_target_gain" => m.near_target_gain,
                "ramp" => m.ramp,
                "cap_factor" => m.cap_factor,
                _ => m.best_effort_mbps,
            };
            assert_eq!(got, v, "{key}");
        }
    }
}

#[test]
fn err_montra() {
    for (key, bad) in [
        ("near_target_gain", "0"),
        ("near_target_gain", "101"),
        ("near_target_gain", "inf"),
        ("near_target_gain", "nan"),
        ("ramp", "-0.5"),
        ("ramp", "1.5"),
        ("cap_factor", "0.5"),
        ("cap_factor", "17"),
        ("best_effort_mbps", "0"),
        ("best_effort_mbps", "\"fast\""),
        ("best_effort_mbps", "1e6"),
    ] {
        let e = expect_err(
            MONTRA_EXAMPLE,
            &format!("[montra]\n{key} = {bad}"),
            &format!("{key} ="),
            &format!("montra.{key}"),
        );
        assert!(e.message.contains("must be a number in"), "{e}");
    }
    // A typo is an error, not a silent default.
    let text = EXAMPLE.replacen(MONTRA_EXAMPLE, "[montra]\nnear_gain = 1", 1);
    let e = Config::from_toml_str(&text, FILE).expect_err("unknown key");
    assert!(e.to_string().contains("near_gain"), "{e}");
}

#[test]
fn reload_refuses_a_montra_change() {
    let c = example();
    let new = edited(MONTRA_EXAMPLE, "[montra]\ncap_factor = 3");
    let why = super::reload_changes(&c, &new, true, 0).expect_err("refused");
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].starts_with("[montra]") && why[0].contains("restart"));
}
