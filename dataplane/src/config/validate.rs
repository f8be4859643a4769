//! Raw (spanned) file -> validated [`Config`], one check at a time, each
//! failure naming the file, line and field.

use core::net::IpAddr;
use core::ops::Range;
use std::collections::{HashMap, HashSet};

use super::Prefix;
use super::error::{ConfigError, Source};
use super::model::{
    Backend, Config, DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, Flow, MAX_SESSION_IDLE_TIMEOUT_SECONDS,
    Overflow, Peer, PortRange, Rule, Security, SecurityMode, Site, TrafficClass, Uplink,
};
use super::plan;
use super::raw::{RawConfig, RawRule, S};
use crate::wire::ethernet::MacAddr;

type R<T> = Result<T, ConfigError>;

fn text(src: &Source<'_>, s: &S<String>, field: &str) -> R<String> {
    let v = s.get_ref().trim();
    if v.is_empty() {
        return Err(src.error(&s.span(), field, "must not be empty"));
    }
    Ok(v.to_owned())
}

fn prefix(src: &Source<'_>, s: &S<String>, field: &str) -> R<Prefix> {
    s.get_ref().parse().map_err(|e| {
        src.error(
            &s.span(),
            field,
            format!("invalid prefix `{}`: {e}", s.get_ref()),
        )
    })
}

fn addr(src: &Source<'_>, s: &S<String>, field: &str) -> R<IpAddr> {
    s.get_ref().trim().parse().map_err(|_| {
        src.error(
            &s.span(),
            field,
            format!("invalid IP address `{}`", s.get_ref()),
        )
    })
}

fn mac(src: &Source<'_>, s: &S<String>, field: &str) -> R<MacAddr> {
    let err = || {
        src.error(
            &s.span(),
            field,
            format!(
                "invalid MAC address `{}` (want aa:bb:cc:dd:ee:ff)",
                s.get_ref()
            ),
        )
    };
    let mut out = [0u8; 6];
    let mut parts = s.get_ref().split(':');
    for b in &mut out {
        let p = parts.next().ok_or_else(err)?;
        if p.len() != 2 {
            return Err(err());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(MacAddr(out))
}

fn protocol(src: &Source<'_>, s: &S<toml::Value>, field: &str) -> R<u8> {
    let err = || {
        src.error(
            &s.span(),
            field,
            "want tcp, udp, icmp, icmpv6, sctp or a number 0..=255",
        )
    };
    match s.get_ref() {
        toml::Value::Integer(n) => u8::try_from(*n).map_err(|_| err()),
        toml::Value::String(name) => match name.to_ascii_lowercase().as_str() {
            "icmp" => Ok(1),
            "tcp" => Ok(6),
            "udp" => Ok(17),
            "icmpv6" => Ok(58),
            "sctp" => Ok(132),
            _ => Err(err()),
        },
        _ => Err(err()),
    }
}

fn ports(src: &Source<'_>, s: &S<toml::Value>, field: &str) -> R<PortRange> {
    let err = |m: &str| src.error(&s.span(), field, m.to_owned());
    let port = |n: i64| u16::try_from(n).map_err(|_| err("port out of range 0..=65535"));
    let num = |t: &str| {
        t.trim()
            .parse::<i64>()
            .map_err(|_| err("want a port or a range \"LO-HI\""))
    };
    let (lo, hi) = match s.get_ref() {
        toml::Value::Integer(n) => (port(*n)?, port(*n)?),
        toml::Value::String(t) => match t.split_once('-') {
            Some((a, b)) => (port(num(a)?)?, port(num(b)?)?),
            None => (port(num(t)?)?, port(num(t)?)?),
        },
        _ => return Err(err("want a port or a range \"LO-HI\"")),
    };
    if lo > hi {
        return Err(err("empty port range (LO > HI)"));
    }
    Ok(PortRange { lo, hi })
}

fn unique<'a>(
    seen: &mut HashSet<&'a str>,
    src: &Source<'_>,
    s: &'a S<String>,
    field: &str,
    what: &str,
) -> R<()> {
    if seen.insert(s.get_ref().trim()) {
        Ok(())
    } else {
        Err(src.error(
            &s.span(),
            field,
            format!("duplicate {what} `{}`", s.get_ref()),
        ))
    }
}

/// Builds and validates a [`Config`] from the raw file, one section after
/// the other: site, security, uplinks, peers (then no two prefixes overlap,
/// and every peer has a public key when security is required), classes,
/// flows, and the optional `[plan]`.
pub(crate) fn build(src: &Source<'_>, raw: &RawConfig) -> R<Config> {
    // (prefix, span, field) of every site prefix, for the overlap check.
    let mut all_prefixes: Vec<(Prefix, Range<usize>, String)> = Vec::new();
    let site = site(src, raw, &mut all_prefixes)?;
    let security = security(src, raw)?;
    let uplinks = uplinks(src, raw)?;
    let mut sites: HashSet<String> = HashSet::from([site.name.clone()]);
    let peers = peers(src, raw, &mut sites, &mut all_prefixes)?;
    no_overlaps(src, &all_prefixes)?;
    if security.required() {
        for (i, p) in raw.peers.iter().enumerate() {
            if p.get_ref().public_key.is_none() {
                return Err(src.error(
                    &p.span(),
                    format!("peers[{i}].public_key"),
                    "required while [security] has a private_key_file (or set mode = \"off\")",
                ));
            }
        }
    }
    let mut cfg = Config {
        site,
        security,
        uplinks,
        peers,
        classes: Vec::new(),
        flows: Vec::new(),
        plan: None,
    };
    cfg.classes = classes(src, raw, &cfg, &sites)?;
    cfg.flows = flows(src, raw, &cfg.classes, &sites)?;

    // Plan.
    if let Some(rp) = &raw.plan {
        let p = plan::from_raw(src, rp.get_ref(), "plan.")?;
        let t = p.resolve(&cfg).map_err(|e| {
            src.error(
                &plan::error_span(rp.get_ref(), &e),
                e.field("plan."),
                e.message.clone(),
            )
        })?;
        cfg.plan = Some(t);
    }
    Ok(cfg)
}

/// The `[site]` table; its LAN prefixes are added to `all_prefixes`.
fn site(
    src: &Source<'_>,
    raw: &RawConfig,
    all_prefixes: &mut Vec<(Prefix, Range<usize>, String)>,
) -> R<Site> {
    let rs = raw.site.get_ref();
    let name = text(src, &rs.name, "site.name")?;
    let vni = u32::try_from(*rs.vni.get_ref())
        .ok()
        .filter(|v| *v < 1 << 24)
        .ok_or_else(|| {
            src.error(
                &rs.vni.span(),
                "site.vni",
                "must be in 0..=16777215 (24 bits)",
            )
        })?;
    let lan_interface = text(src, &rs.lan_interface, "site.lan_interface")?;
    if rs.lan_prefixes.is_empty() {
        return Err(src.error(
            &raw.site.span(),
            "site.lan_prefixes",
            "at least one LAN prefix is required",
        ));
    }
    let mut lan_prefixes = Vec::new();
    for (i, p) in rs.lan_prefixes.iter().enumerate() {
        let f = format!("site.lan_prefixes[{i}]");
        let v = prefix(src, p, &f)?;
        lan_prefixes.push(v);
        all_prefixes.push((v, p.span(), f));
    }
    let max_sessions_per_host = host_cap(src, rs.max_sessions_per_host.as_ref(), "site")?;
    let session_idle_timeout_seconds = rs
        .session_idle_timeout_seconds
        .as_ref()
        .map(|v| {
            u32::try_from(*v.get_ref())
                .ok()
                .filter(|n| (1..=MAX_SESSION_IDLE_TIMEOUT_SECONDS).contains(n))
                .ok_or_else(|| {
                    src.error(
                        &v.span(),
                        "site.session_idle_timeout_seconds",
                        format!(
                            "must be in 1..={MAX_SESSION_IDLE_TIMEOUT_SECONDS} (seconds; \
                             default {DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS})"
                        ),
                    )
                })
        })
        .transpose()?;
    Ok(Site {
        name,
        vni,
        lan_interface,
        lan_prefixes,
        max_sessions_per_host,
        session_idle_timeout_seconds,
    })
}

/// Largest `rekey_after_seconds`: a rekey must complete (with retries)
/// before the key is refused at `REJECT_AFTER_TIME`.
pub(crate) const MAX_REKEY_AFTER_SECONDS: u64 =
    crate::secure::REJECT_AFTER_TIME_NS / crate::sys::SEC - 30;

/// The `[security]` table: required; either a private key file (then every
/// peer needs a public key, checked by [`build`]) or `mode = "off"`.
fn security(src: &Source<'_>, raw: &RawConfig) -> R<Security> {
    let Some(rs) = &raw.security else {
        return Err(src.error(
            &(0..0),
            "security",
            "a [security] table is required: private_key_file = \"...\" (and a public_key \
             on every peer), or mode = \"off\" to run without encryption",
        ));
    };
    let span = rs.span();
    let rs = rs.get_ref();
    let mode = match rs.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("required", _)) => SecurityMode::Required,
        Some(("off", _)) => SecurityMode::Off,
        Some((other, at)) => {
            return Err(src.error(
                &at,
                "security.mode",
                format!("unknown mode `{other}` (want required or off)"),
            ));
        }
    };
    let private_key_file = rs
        .private_key_file
        .as_ref()
        .map(|f| text(src, f, "security.private_key_file").map(std::path::PathBuf::from))
        .transpose()?;
    if mode == SecurityMode::Required && private_key_file.is_none() {
        return Err(src.error(
            &span,
            "security.private_key_file",
            "required unless mode = \"off\" (run without encryption)",
        ));
    }
    let mut sec = Security {
        mode,
        private_key_file,
        ..Security::off()
    };
    if let Some(v) = &rs.rekey_after_seconds {
        let n = u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| (1..=MAX_REKEY_AFTER_SECONDS).contains(n))
            .ok_or_else(|| {
                src.error(
                    &v.span(),
                    "security.rekey_after_seconds",
                    format!("must be in 1..={MAX_REKEY_AFTER_SECONDS}"),
                )
            })?;
        sec.rekey_after_ns = n * crate::sys::SEC;
    }
    if let Some(v) = &rs.rekey_after_packets {
        let max = crate::secure::REJECT_AFTER_MESSAGES;
        sec.rekey_after_packets = u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                src.error(
                    &v.span(),
                    "security.rekey_after_packets",
                    format!("must be in 1..={max}"),
                )
            })?;
    }
    Ok(sec)
}

/// A `max_sessions_per_host` value: 1..=2^32-1.
fn host_cap(src: &Source<'_>, v: Option<&S<i64>>, table: &str) -> R<Option<u32>> {
    v.map(|v| {
        u32::try_from(*v.get_ref())
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                src.error(
                    &v.span(),
                    format!("{table}.max_sessions_per_host"),
                    "must be in 1..=4294967295",
                )
            })
    })
    .transpose()
}

/// The `[[uplinks]]`: at least one, unique names, valid addresses.
fn uplinks(src: &Source<'_>, raw: &RawConfig) -> R<Vec<Uplink>> {
    if raw.uplinks.is_empty() {
        return Err(src.error(
            &(0..0),
            "uplinks",
            "at least one [[uplinks]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut uplinks = Vec::new();
    for (i, u) in raw.uplinks.iter().enumerate() {
        let u = u.get_ref();
        let f = |k: &str| format!("uplinks[{i}].{k}");
        let name = text(src, &u.name, &f("name"))?;
        unique(&mut seen, src, &u.name, &f("name"), "uplink")?;
        let cap = *u.capacity_mbps.get_ref();
        if !(cap.is_finite() && cap > 0.0) {
            return Err(src.error(
                &u.capacity_mbps.span(),
                f("capacity_mbps"),
                "must be finite and > 0",
            ));
        }
        let local_address = addr(src, &u.local_address, &f("local_address"))?;
        let next_hop = u
            .next_hop
            .as_ref()
            .map(|s| addr(src, s, &f("next_hop")))
            .transpose()?;
        if let (Some(nh), Some(s)) = (next_hop, &u.next_hop)
            && nh.is_ipv4() != local_address.is_ipv4()
        {
            return Err(src.error(
                &s.span(),
                f("next_hop"),
                "address family differs from local_address",
            ));
        }
        let gateway_mac = u
            .gateway_mac
            .as_ref()
            .map(|s| mac(src, s, &f("gateway_mac")))
            .transpose()?;
        let backend = match u.backend.get_ref().as_str() {
            "af_xdp" => Backend::AfXdp,
            "io_uring" => Backend::IoUring,
            other => {
                return Err(src.error(
                    &u.backend.span(),
                    f("backend"),
                    format!("unknown backend `{other}` (want af_xdp or io_uring)"),
                ));
            }
        };
        uplinks.push(Uplink {
            name,
            interface: text(src, &u.interface, &f("interface"))?,
            local_address,
            capacity_mbps: cap,
            gateway_mac,
            next_hop,
            backend,
        });
    }
    Ok(uplinks)
}

/// The `[[peers]]`: unique site names (added to `sites`), prefixes (added to
/// `all_prefixes`), at least one gateway address each.
fn peers(
    src: &Source<'_>,
    raw: &RawConfig,
    sites: &mut HashSet<String>,
    all_prefixes: &mut Vec<(Prefix, Range<usize>, String)>,
) -> R<Vec<Peer>> {
    let mut peers = Vec::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let span = p.span();
        let p = p.get_ref();
        let f = |k: &str| format!("peers[{i}].{k}");
        let name = text(src, &p.name, &f("name"))?;
        if !sites.insert(name.clone()) {
            return Err(src.error(
                &p.name.span(),
                f("name"),
                format!("duplicate site `{name}`"),
            ));
        }
        if p.prefixes.is_empty() {
            return Err(src.error(&span, f("prefixes"), "at least one prefix is required"));
        }
        let mut prefixes = Vec::new();
        for (j, s) in p.prefixes.iter().enumerate() {
            let fj = format!("peers[{i}].prefixes[{j}]");
            let v = prefix(src, s, &fj)?;
            prefixes.push(v);
            all_prefixes.push((v, s.span(), fj));
        }
        let gws = match &p.gateways {
            Some(g) if !g.get_ref().is_empty() => g,
            Some(g) => {
                return Err(src.error(
                    &g.span(),
                    f("gateways"),
                    "at least one gateway address is required",
                ));
            }
            None => {
                return Err(src.error(
                    &span,
                    f("gateways"),
                    "at least one gateway address is required",
                ));
            }
        };
        let mut gateways: Vec<IpAddr> = Vec::new();
        for (j, g) in gws.get_ref().iter().enumerate() {
            let fj = format!("peers[{i}].gateways[{j}]");
            let a = addr(src, g, &fj)?;
            if gateways.contains(&a) {
                return Err(src.error(&g.span(), fj, format!("duplicate gateway address {a}")));
            }
            gateways.push(a);
        }
        let public_key = p
            .public_key
            .as_ref()
            .map(|k| {
                super::key::decode_key(k.get_ref()).map_err(|e| {
                    src.error(
                        &k.span(),
                        f("public_key"),
                        format!("invalid public key: {e}"),
                    )
                })
            })
            .transpose()?;
        peers.push(Peer {
            name,
            prefixes,
            gateways,
            public_key,
        });
    }
    Ok(peers)
}

/// No two prefixes of the overlay (ours and every peer's) overlap.
fn no_overlaps(src: &Source<'_>, all_prefixes: &[(Prefix, Range<usize>, String)]) -> R<()> {
    for (i, (a, _, fa)) in all_prefixes.iter().enumerate() {
        for (b, span, fb) in &all_prefixes[i + 1..] {
            if a.overlaps(b) {
                return Err(src.error(span, fb.clone(), format!("prefix {b} overlaps {a} ({fa})")));
            }
        }
    }
    Ok(())
}

/// The `[[classes]]`: unique ids, known and distinct end sites, rules for
/// classes leaving this site.
fn classes(
    src: &Source<'_>,
    raw: &RawConfig,
    cfg: &Config,
    sites: &HashSet<String>,
) -> R<Vec<TrafficClass>> {
    let mut seen = HashSet::new();
    let mut classes = Vec::new();
    for (i, c) in raw.classes.iter().enumerate() {
        let span = c.span();
        let c = c.get_ref();
        let f = |k: &str| format!("classes[{i}].{k}");
        let id = text(src, &c.id, &f("id"))?;
        unique(&mut seen, src, &c.id, &f("id"), "class")?;
        let source = text(src, &c.source, &f("source"))?;
        let destination = text(src, &c.destination, &f("destination"))?;
        for (v, s, k) in [
            (&source, &c.source, "source"),
            (&destination, &c.destination, "destination"),
        ] {
            if !sites.contains(v.as_str()) {
                return Err(src.error(&s.span(), f(k), format!("unknown site `{v}`")));
            }
        }
        if source == destination {
            return Err(src.error(
                &c.destination.span(),
                f("destination"),
                "must differ from source",
            ));
        }
        let overflow = match c.overflow.get_ref().as_str() {
            "best_effort" => Overflow::BestEffort,
            "drop" => Overflow::Drop,
            other => {
                return Err(src.error(
                    &c.overflow.span(),
                    f("overflow"),
                    format!("unknown overflow action `{other}` (want best_effort or drop)"),
                ));
            }
        };
        let dst_prefixes = cfg.site_prefixes(&destination).unwrap_or(&[]).to_vec();
        let mut rules = Vec::new();
        let raw_rules = c.rules.as_ref().map_or(&[][..], |r| r.get_ref().as_slice());
        if raw_rules.is_empty() && source == cfg.site.name {
            let at = c.rules.as_ref().map_or(span.clone(), S::span);
            return Err(src.error(
                &at,
                f("rules"),
                "a class leaving this site needs at least one rule",
            ));
        }
        for (j, r) in raw_rules.iter().enumerate() {
            rules.push(rule(
                src,
                r.get_ref(),
                &format!("classes[{i}].rules[{j}]"),
                &dst_prefixes,
                &destination,
            )?);
        }
        let kind = text(src, &c.kind, &f("type"))?;
        let max_sessions_per_host = host_cap(
            src,
            c.max_sessions_per_host.as_ref(),
            &format!("classes[{i}]"),
        )?;
        classes.push(TrafficClass {
            id,
            source,
            destination,
            kind,
            overflow,
            max_sessions_per_host,
            rules,
        });
    }
    Ok(classes)
}

/// The `[[flows]]`: unique ids, a known class, a loop-free route from the
/// class's source to its destination over known sites.
fn flows(
    src: &Source<'_>,
    raw: &RawConfig,
    classes: &[TrafficClass],
    sites: &HashSet<String>,
) -> R<Vec<Flow>> {
    let class_sites: HashMap<&str, (&str, &str)> = classes
        .iter()
        .map(|c| (c.id.as_str(), (c.source.as_str(), c.destination.as_str())))
        .collect();
    let mut seen = HashSet::new();
    let mut flows = Vec::new();
    for (i, fl) in raw.flows.iter().enumerate() {
        let fl = fl.get_ref();
        let f = |k: &str| format!("flows[{i}].{k}");
        let id = text(src, &fl.id, &f("id"))?;
        unique(&mut seen, src, &fl.id, &f("id"), "flow")?;
        let class = text(src, &fl.class, &f("class"))?;
        let (csrc, cdst) = *class_sites.get(class.as_str()).ok_or_else(|| {
            src.error(
                &fl.class.span(),
                f("class"),
                format!("unknown class `{class}`"),
            )
        })?;
        let hops = fl.route.get_ref();
        if hops.len() < 2 {
            return Err(src.error(
                &fl.route.span(),
                f("route"),
                "a route needs at least a source and a destination site",
            ));
        }
        let mut route: Vec<String> = Vec::new();
        for (j, h) in hops.iter().enumerate() {
            let fj = format!("flows[{i}].route[{j}]");
            let v = text(src, h, &fj)?;
            if !sites.contains(v.as_str()) {
                return Err(src.error(&h.span(), fj, format!("unknown site `{v}`")));
            }
            if route.contains(&v) {
                return Err(src.error(&h.span(), fj, format!("site `{v}` appears twice (loop)")));
            }
            route.push(v);
        }
        if route[0] != csrc {
            return Err(src.error(
                &hops[0].span(),
                format!("flows[{i}].route[0]"),
                format!("route must start at the class's source `{csrc}`"),
            ));
        }
        let last = route.len() - 1;
        if route[last] != cdst {
            return Err(src.error(
                &hops[last].span(),
                format!("flows[{i}].route[{last}]"),
                format!("route must end at the class's destination `{cdst}`"),
            ));
        }
        flows.push(Flow { id, class, route });
    }
    Ok(flows)
}

fn rule(src: &Source<'_>, r: &RawRule, at: &str, dst_prefixes: &[Prefix], dst: &str) -> R<Rule> {
    let mut prefixes = Vec::new();
    for (k, s) in r.dst_prefixes.iter().enumerate() {
        let f = format!("{at}.dst_prefixes[{k}]");
        let p = prefix(src, s, &f)?;
        if !dst_prefixes.iter().any(|d| d.covers(&p)) {
            return Err(src.error(
                &s.span(),
                f,
                format!("{p} is not within a prefix of the destination site `{dst}`"),
            ));
        }
        prefixes.push(p);
    }
    let protocol = r
        .protocol
        .as_ref()
        .map(|s| protocol(src, s, &format!("{at}.protocol")))
        .transpose()?;
    let src_ports = r
        .src_ports
        .as_ref()
        .map(|s| ports(src, s, &format!("{at}.src_ports")))
        .transpose()?;
    let dst_ports = r
        .dst_ports
        .as_ref()
        .map(|s| ports(src, s, &format!("{at}.dst_ports")))
        .transpose()?;
    for (p, s, k) in [
        (src_ports, &r.src_ports, "src_ports"),
        (dst_ports, &r.dst_ports, "dst_ports"),
    ] {
        if let (Some(_), Some(s)) = (p, s)
            && !matches!(protocol, Some(6 | 17 | 132))
        {
            return Err(src.error(
                &s.span(),
                format!("{at}.{k}"),
                "ports need protocol tcp, udp or sctp",
            ));
        }
    }
    let mut dscp = Vec::new();
    for (k, d) in r.dscp.iter().enumerate() {
        let f = format!("{at}.dscp[{k}]");
        let v = u8::try_from(*d.get_ref())
            .ok()
            .filter(|v| *v < 64)
            .ok_or_else(|| src.error(&d.span(), f.clone(), "DSCP must be in 0..=63"))?;
        if dscp.contains(&v) {
            return Err(src.error(&d.span(), f, format!("duplicate DSCP value {v}")));
        }
        dscp.push(v);
    }
    Ok(Rule {
        dst_prefixes: prefixes,
        protocol,
        src_ports,
        dst_ports,
        dscp,
    })
}
