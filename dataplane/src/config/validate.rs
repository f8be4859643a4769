//! Raw (spanned) file -> validated [`Config`], one check at a time, each
//! failure naming the file, line and field.

use core::net::IpAddr;
use core::ops::Range;
use std::collections::{HashMap, HashSet};

use super::Prefix;
use super::error::{ConfigError, Source};
use super::model::{
    Backend, Config, DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, Flow, MAX_SESSION_IDLE_TIMEOUT_SECONDS,
    MONTRA_BEST_EFFORT_MBPS, MONTRA_CAP_FACTOR, MONTRA_NEAR_TARGET_GAIN, MONTRA_RAMP, Metrics,
    Montra, Overflow, Peer, PortRange, Rule, Security, SecurityMode, Site, TrafficClass, Uplink,
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

/// Every problem found, in file order.
type Errs = Vec<ConfigError>;

/// `r`'s value, or `None` with its error recorded.
fn keep<T>(e: &mut Errs, r: R<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(err) => {
            e.push(err);
            None
        }
    }
}

/// Builds and validates a [`Config`] from the raw file, one section after
/// the other: site, security, uplinks, peers (then no two prefixes overlap,
/// no gateway address is listed twice or is one of ours, and every peer has
/// a public key when security is required), classes, flows, and the
/// optional `[plan]`. Every problem is reported (sorted by position), not
/// only the first: a value that is wrong is replaced by a neutral one for
/// the checks that follow, so that one mistake is reported once.
pub(crate) fn build(src: &Source<'_>, raw: &RawConfig) -> Result<Config, Errs> {
    let mut e = Errs::new();
    // (prefix, span, field) of every site prefix, for the overlap check.
    let mut all_prefixes: Vec<(Prefix, Range<usize>, String)> = Vec::new();
    let site = site(src, raw, &mut all_prefixes, &mut e);
    let security = security(src, raw, &mut e);
    let uplinks = uplinks(src, raw, &mut e);
    let mut sites: HashSet<String> = HashSet::from([site.name.clone()]);
    let peers = peers(src, raw, &mut sites, &mut all_prefixes, &mut e);
    if raw.peers.len() > crate::secure::MAX_PEERS as usize {
        let span = raw.peers[crate::secure::MAX_PEERS as usize].span();
        e.push(src.error(
            &span,
            "peers",
            format!(
                "{} peers: a gateway has at most {} (its key slots and plan tables are sized by them)",
                raw.peers.len(),
                crate::secure::MAX_PEERS
            ),
        ));
    }
    no_overlaps(src, &all_prefixes, &mut e);
    gateway_addresses(src, raw, &uplinks, &mut e);
    if security.required() {
        for (i, p) in raw.peers.iter().enumerate() {
            if p.get_ref().public_key.is_none() {
                e.push(src.error(
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
        metrics: metrics(src, raw, &mut e),
        montra: montra(src, raw, &mut e),
        plan: None,
    };
    cfg.classes = classes(src, raw, &cfg, &sites, &mut e);
    cfg.flows = flows(src, raw, &cfg.classes, &sites, &mut e);

    // Plan: its types always; against the configuration only when that
    // is sound (its ids refer to the classes and flows).
    if let Some(rp) = &raw.plan {
        let p = keep(&mut e, plan::from_raw(src, rp.get_ref(), "plan."));
        if let Some(p) = p
            && e.is_empty()
        {
            let t = p.resolve(&cfg).map_err(|err| {
                src.error(
                    &plan::error_span(rp.get_ref(), &err),
                    err.field("plan."),
                    err.message.clone(),
                )
            });
            cfg.plan = keep(&mut e, t);
        }
    }
    if e.is_empty() {
        Ok(cfg)
    } else {
        e.sort_by_key(|x| (x.line, x.column));
        Err(e)
    }
}

/// The `[site]` table; its LAN prefixes are added to `all_prefixes`.
fn site(
    src: &Source<'_>,
    raw: &RawConfig,
    all_prefixes: &mut Vec<(Prefix, Range<usize>, String)>,
    e: &mut Errs,
) -> Site {
    let rs = raw.site.get_ref();
    let name = keep(e, text(src, &rs.name, "site.name")).unwrap_or_default();
    let vni = u32::try_from(*rs.vni.get_ref())
        .ok()
        .filter(|v| *v < 1 << 24)
        .ok_or_else(|| {
            src.error(
                &rs.vni.span(),
                "site.vni",
                "must be in 0..=16777215 (24 bits)",
            )
        });
    let vni = keep(e, vni).unwrap_or(0);
    let lan_interface =
        keep(e, text(src, &rs.lan_interface, "site.lan_interface")).unwrap_or_default();
    if rs.lan_prefixes.is_empty() {
        e.push(src.error(
            &raw.site.span(),
            "site.lan_prefixes",
            "at least one LAN prefix is required",
        ));
    }
    let mut lan_prefixes = Vec::new();
    for (i, p) in rs.lan_prefixes.iter().enumerate() {
        let f = format!("site.lan_prefixes[{i}]");
        if let Some(v) = keep(e, prefix(src, p, &f)) {
            lan_prefixes.push(v);
            all_prefixes.push((v, p.span(), f));
        }
    }
    let max_sessions_per_host =
        keep(e, host_cap(src, rs.max_sessions_per_host.as_ref(), "site")).flatten();
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
        .transpose();
    let session_idle_timeout_seconds = keep(e, session_idle_timeout_seconds).flatten();
    Site {
        name,
        vni,
        lan_interface,
        lan_prefixes,
        max_sessions_per_host,
        session_idle_timeout_seconds,
    }
}

/// Largest `rekey_after_seconds`: a rekey must complete (with retries)
/// before the key is refused at `REJECT_AFTER_TIME`.
pub(crate) const MAX_REKEY_AFTER_SECONDS: u64 =
    crate::secure::REJECT_AFTER_TIME_NS / crate::sys::SEC - 30;

/// The optional `[metrics]` table: `listen` an `IP:PORT` with a port.
fn metrics(src: &Source<'_>, raw: &RawConfig, e: &mut Errs) -> Option<Metrics> {
    let l = &raw.metrics.as_ref()?.get_ref().listen;
    let bad = |why: &str| src.error(&l.span(), "metrics.listen", why.to_string());
    match l.get_ref().trim().parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Some(Metrics { listen: a }),
        Ok(_) => {
            e.push(bad(
                "port 0: give the port to listen on (e.g. 127.0.0.1:9464)",
            ));
            None
        }
        Err(_) => {
            e.push(bad(&format!(
                "invalid address `{}` (want IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464)",
                l.get_ref()
            )));
            None
        }
    }
}

/// The optional `[montra]` table: each key a number (integer or float) in
/// its range; absent keys keep their defaults.
fn montra(src: &Source<'_>, raw: &RawConfig, e: &mut Errs) -> Montra {
    let mut m = Montra::default();
    let Some(rm) = &raw.montra else {
        return m;
    };
    let rm = rm.get_ref();
    let keys = [
        (
            "near_target_gain",
            &rm.near_target_gain,
            MONTRA_NEAR_TARGET_GAIN,
            &mut m.near_target_gain,
        ),
        ("ramp", &rm.ramp, MONTRA_RAMP, &mut m.ramp),
        (
            "cap_factor",
            &rm.cap_factor,
            MONTRA_CAP_FACTOR,
            &mut m.cap_factor,
        ),
        (
            "best_effort_mbps",
            &rm.best_effort_mbps,
            MONTRA_BEST_EFFORT_MBPS,
            &mut m.best_effort_mbps,
        ),
    ];
    for (name, v, (lo, hi), out) in keys {
        let Some(v) = v else { continue };
        // An integer of a sane size is exact as f64; a huge one is out of
        // range either way.
        #[allow(clippy::cast_precision_loss)]
        let x = match v.get_ref() {
            toml::Value::Float(x) => Some(*x),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && (lo..=hi).contains(&x) => *out = x,
            _ => e.push(src.error(
                &v.span(),
                format!("montra.{name}"),
                format!("must be a number in {lo}..={hi}, not {}", v.get_ref()),
            )),
        }
    }
    m
}

/// The `[security]` table: required; either a private key file (then every
/// peer needs a public key, checked by [`build`]) or `mode = "off"`.
fn security(src: &Source<'_>, raw: &RawConfig, e: &mut Errs) -> Security {
    let Some(rs) = &raw.security else {
        e.push(src.error(
            &(0..0),
            "security",
            "a [security] table is required: private_key_file = \"...\" (and a public_key \
             on every peer), or mode = \"off\" to run without encryption",
        ));
        return Security::off();
    };
    let span = rs.span();
    let rs = rs.get_ref();
    let mode = match rs.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("required", _)) => SecurityMode::Required,
        Some(("off", _)) => SecurityMode::Off,
        Some((other, at)) => {
            e.push(src.error(
                &at,
                "security.mode",
                format!("unknown mode `{other}` (want required or off)"),
            ));
            return Security::off();
        }
    };
    let private_key_file = rs
        .private_key_file
        .as_ref()
        .and_then(|f| keep(e, text(src, f, "security.private_key_file")))
        .map(std::path::PathBuf::from);
    if mode == SecurityMode::Required && private_key_file.is_none() {
        if rs.private_key_file.is_none() {
            e.push(src.error(
                &span,
                "security.private_key_file",
                "required unless mode = \"off\" (run without encryption)",
            ));
        }
        return Security::off();
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
            });
        if let Some(n) = keep(e, n) {
            sec.rekey_after_ns = n * crate::sys::SEC;
        }
    }
    if let Some(v) = &rs.rekey_after_packets {
        let max = crate::secure::REJECT_AFTER_MESSAGES;
        let n = u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                src.error(
                    &v.span(),
                    "security.rekey_after_packets",
                    format!("must be in 1..={max}"),
                )
            });
        if let Some(n) = keep(e, n) {
            sec.rekey_after_packets = n;
        }
    }
    sec
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

/// The `[[uplinks]]`: at least one, unique names, valid addresses. An
/// uplink with a problem is left out.
fn uplinks(src: &Source<'_>, raw: &RawConfig, e: &mut Errs) -> Vec<Uplink> {
    if raw.uplinks.is_empty() {
        e.push(src.error(
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
        let before = e.len();
        let name = keep(e, text(src, &u.name, &f("name")));
        if name.is_some() {
            keep(e, unique(&mut seen, src, &u.name, &f("name"), "uplink"));
        }
        let cap = *u.capacity_mbps.get_ref();
        if !(cap.is_finite() && cap > 0.0) {
            e.push(src.error(
                &u.capacity_mbps.span(),
                f("capacity_mbps"),
                "must be finite and > 0",
            ));
        }
        let local_address = keep(e, addr(src, &u.local_address, &f("local_address")));
        let next_hop = u
            .next_hop
            .as_ref()
            .and_then(|s| keep(e, addr(src, s, &f("next_hop"))));
        if let (Some(nh), Some(la), Some(s)) = (next_hop, local_address, &u.next_hop)
            && nh.is_ipv4() != la.is_ipv4()
        {
            e.push(src.error(
                &s.span(),
                f("next_hop"),
                "address family differs from local_address",
            ));
        }
        let gateway_mac = u
            .gateway_mac
            .as_ref()
            .and_then(|s| keep(e, mac(src, s, &f("gateway_mac"))));
        let backend = match u.backend.get_ref().as_str() {
            "af_xdp" => Backend::AfXdp,
            "io_uring" => Backend::IoUring,
            other => {
                e.push(src.error(
                    &u.backend.span(),
                    f("backend"),
                    format!("unknown backend `{other}` (want af_xdp or io_uring)"),
                ));
                Backend::AfXdp
            }
        };
        let interface = keep(e, text(src, &u.interface, &f("interface")));
        if let (true, Some(name), Some(local_address), Some(interface)) =
            (e.len() == before, name, local_address, interface)
        {
            uplinks.push(Uplink {
                name,
                interface,
                local_address,
                capacity_mbps: cap,
                gateway_mac,
                next_hop,
                backend,
            });
        }
    }
    uplinks
}

/// The `[[peers]]`: unique site names (added to `sites`), prefixes (added to
/// `all_prefixes`), at least one gateway address each. A peer with a
/// problem is left out (its name still counts as a site).
fn peers(
    src: &Source<'_>,
    raw: &RawConfig,
    sites: &mut HashSet<String>,
    all_prefixes: &mut Vec<(Prefix, Range<usize>, String)>,
    e: &mut Errs,
) -> Vec<Peer> {
    let mut peers = Vec::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let span = p.span();
        let p = p.get_ref();
        let f = |k: &str| format!("peers[{i}].{k}");
        let before = e.len();
        let name = keep(e, text(src, &p.name, &f("name"))).unwrap_or_default();
        if !name.is_empty() && !sites.insert(name.clone()) {
            e.push(src.error(
                &p.name.span(),
                f("name"),
                format!("duplicate site `{name}`"),
            ));
        }
        if p.prefixes.is_empty() {
            e.push(src.error(&span, f("prefixes"), "at least one prefix is required"));
        }
        let mut prefixes = Vec::new();
        for (j, s) in p.prefixes.iter().enumerate() {
            let fj = format!("peers[{i}].prefixes[{j}]");
            if let Some(v) = keep(e, prefix(src, s, &fj)) {
                prefixes.push(v);
                all_prefixes.push((v, s.span(), fj));
            }
        }
        let mut gateways: Vec<IpAddr> = Vec::new();
        match &p.gateways {
            Some(g) if !g.get_ref().is_empty() => {
                for (j, g) in g.get_ref().iter().enumerate() {
                    let fj = format!("peers[{i}].gateways[{j}]");
                    let Some(a) = keep(e, addr(src, g, &fj)) else {
                        continue;
                    };
                    if gateways.contains(&a) {
                        e.push(src.error(&g.span(), fj, format!("duplicate gateway address {a}")));
                    } else {
                        gateways.push(a);
                    }
                }
            }
            Some(g) => e.push(src.error(
                &g.span(),
                f("gateways"),
                "at least one gateway address is required",
            )),
            None => e.push(src.error(
                &span,
                f("gateways"),
                "at least one gateway address is required",
            )),
        }
        let public_key = p.public_key.as_ref().and_then(|k| {
            keep(
                e,
                super::key::decode_key(k.get_ref()).map_err(|err| {
                    src.error(
                        &k.span(),
                        f("public_key"),
                        format!("invalid public key: {err}"),
                    )
                }),
            )
        });
        if e.len() == before {
            peers.push(Peer {
                name,
                prefixes,
                gateways,
                public_key,
            });
        }
    }
    peers
}

/// No two prefixes of the overlay (ours and every peer's) overlap.
fn no_overlaps(src: &Source<'_>, all_prefixes: &[(Prefix, Range<usize>, String)], e: &mut Errs) {
    for (i, (a, _, fa)) in all_prefixes.iter().enumerate() {
        for (b, span, fb) in &all_prefixes[i + 1..] {
            if a.overlaps(b) {
                e.push(src.error(span, fb.clone(), format!("prefix {b} overlaps {a} ({fa})")));
            }
        }
    }
}

/// No gateway address is listed under two peers (which site would a packet
/// from it be?), and none is one of our own uplinks' addresses (we would
/// send to ourselves).
fn gateway_addresses(src: &Source<'_>, raw: &RawConfig, uplinks: &[Uplink], e: &mut Errs) {
    let mut owner: HashMap<IpAddr, String> = HashMap::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let p = p.get_ref();
        let Some(gws) = &p.gateways else { continue };
        let mut mine = HashSet::new();
        for (j, g) in gws.get_ref().iter().enumerate() {
            let Ok(a) = g.get_ref().trim().parse::<IpAddr>() else {
                continue;
            };
            let fj = format!("peers[{i}].gateways[{j}]");
            if let Some(u) = uplinks.iter().find(|u| u.local_address == a) {
                e.push(src.error(
                    &g.span(),
                    fj.clone(),
                    format!(
                        "{a} is our own address (uplink `{}`'s local_address)",
                        u.name
                    ),
                ));
            }
            if !mine.insert(a) {
                continue; // reported by `peers`
            }
            if let Some(first) = owner.get(&a) {
                e.push(src.error(
                    &g.span(),
                    fj,
                    format!("gateway address {a} is also listed by peer `{first}`"),
                ));
            } else {
                owner.insert(a, p.name.get_ref().trim().to_owned());
            }
        }
    }
}

/// The `[[classes]]`: unique ids, known and distinct end sites, rules for
/// classes leaving this site. A class with a problem is left out (its id
/// still counts, so that its flows are not reported too).
fn classes(
    src: &Source<'_>,
    raw: &RawConfig,
    cfg: &Config,
    sites: &HashSet<String>,
    e: &mut Errs,
) -> Vec<TrafficClass> {
    let mut seen = HashSet::new();
    let mut classes = Vec::new();
    for (i, c) in raw.classes.iter().enumerate() {
        let span = c.span();
        let c = c.get_ref();
        let f = |k: &str| format!("classes[{i}].{k}");
        let id = keep(e, text(src, &c.id, &f("id"))).unwrap_or_default();
        if !id.is_empty() {
            keep(e, unique(&mut seen, src, &c.id, &f("id"), "class"));
        }
        let mut source = keep(e, text(src, &c.source, &f("source"))).unwrap_or_default();
        let mut destination =
            keep(e, text(src, &c.destination, &f("destination"))).unwrap_or_default();
        // An unknown site is reported here and blanked: the flows' routes
        // are not checked against it.
        for (v, s, k) in [
            (&mut source, &c.source, "source"),
            (&mut destination, &c.destination, "destination"),
        ] {
            if !v.is_empty() && !sites.contains(v.as_str()) {
                e.push(src.error(&s.span(), f(k), format!("unknown site `{v}`")));
                v.clear();
            }
        }
        if !source.is_empty() && source == destination {
            e.push(src.error(
                &c.destination.span(),
                f("destination"),
                "must differ from source",
            ));
        }
        let overflow = match c.overflow.get_ref().as_str() {
            "best_effort" => Overflow::BestEffort,
            "drop" => Overflow::Drop,
            other => {
                e.push(src.error(
                    &c.overflow.span(),
                    f("overflow"),
                    format!("unknown overflow action `{other}` (want best_effort or drop)"),
                ));
                Overflow::Drop
            }
        };
        // The rules' prefixes are checked against the destination's (not
        // when the destination or its peer entry has a problem).
        let dst_prefixes = (!destination.is_empty())
            .then(|| cfg.site_prefixes(&destination))
            .flatten()
            .map(<[Prefix]>::to_vec);
        let mut rules = Vec::new();
        let raw_rules = c.rules.as_ref().map_or(&[][..], |r| r.get_ref().as_slice());
        if raw_rules.is_empty() && !source.is_empty() && source == cfg.site.name {
            let at = c.rules.as_ref().map_or(span.clone(), S::span);
            e.push(src.error(
                &at,
                f("rules"),
                "a class leaving this site needs at least one rule",
            ));
        }
        for (j, r) in raw_rules.iter().enumerate() {
            if let Some(r) = rule(
                src,
                r.get_ref(),
                &format!("classes[{i}].rules[{j}]"),
                dst_prefixes.as_deref(),
                &destination,
                e,
            ) {
                rules.push(r);
            }
        }
        let kind = keep(e, text(src, &c.kind, &f("type"))).unwrap_or_default();
        let max_sessions_per_host = keep(
            e,
            host_cap(
                src,
                c.max_sessions_per_host.as_ref(),
                &format!("classes[{i}]"),
            ),
        )
        .flatten();
        // A class with a problem keeps its place (its flows refer to it by
        // id); the configuration is refused anyway.
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
    classes
}

/// The `[[flows]]`: unique ids, a known class, a loop-free route from the
/// class's source to its destination over known sites.
fn flows(
    src: &Source<'_>,
    raw: &RawConfig,
    classes: &[TrafficClass],
    sites: &HashSet<String>,
    e: &mut Errs,
) -> Vec<Flow> {
    let class_sites: HashMap<&str, (&str, &str)> = classes
        .iter()
        .map(|c| (c.id.as_str(), (c.source.as_str(), c.destination.as_str())))
        .collect();
    let mut seen = HashSet::new();
    let mut flows = Vec::new();
    for (i, fl) in raw.flows.iter().enumerate() {
        let fl = fl.get_ref();
        let f = |k: &str| format!("flows[{i}].{k}");
        let id = keep(e, text(src, &fl.id, &f("id"))).unwrap_or_default();
        if !id.is_empty() {
            keep(e, unique(&mut seen, src, &fl.id, &f("id"), "flow"));
        }
        let class = keep(e, text(src, &fl.class, &f("class"))).unwrap_or_default();
        let ends = class_sites.get(class.as_str()).copied();
        if ends.is_none() && !class.is_empty() {
            e.push(src.error(
                &fl.class.span(),
                f("class"),
                format!("unknown class `{class}`"),
            ));
        }
        let hops = fl.route.get_ref();
        if hops.len() < 2 {
            e.push(src.error(
                &fl.route.span(),
                f("route"),
                "a route needs at least a source and a destination site",
            ));
            continue;
        }
        let mut route: Vec<String> = Vec::new();
        let mut sound = true;
        for (j, h) in hops.iter().enumerate() {
            let fj = format!("flows[{i}].route[{j}]");
            let Some(v) = keep(e, text(src, h, &fj)) else {
                sound = false;
                continue;
            };
            if !sites.contains(v.as_str()) {
                e.push(src.error(&h.span(), fj, format!("unknown site `{v}`")));
                sound = false;
            } else if route.contains(&v) {
                e.push(src.error(&h.span(), fj, format!("site `{v}` appears twice (loop)")));
                sound = false;
            }
            route.push(v);
        }
        if let (true, Some((csrc, cdst))) = (sound, ends)
            && !csrc.is_empty()
            && !cdst.is_empty()
        {
            if route[0] != csrc {
                e.push(src.error(
                    &hops[0].span(),
                    format!("flows[{i}].route[0]"),
                    format!("route must start at the class's source `{csrc}`"),
                ));
            }
            let last = route.len() - 1;
            if route[last] != cdst {
                e.push(src.error(
                    &hops[last].span(),
                    format!("flows[{i}].route[{last}]"),
                    format!("route must end at the class's destination `{cdst}`"),
                ));
            }
        }
        flows.push(Flow { id, class, route });
    }
    flows
}

/// One rule of a class; `None` (problems recorded) when it has a problem.
fn rule(
    src: &Source<'_>,
    r: &RawRule,
    at: &str,
    dst_prefixes: Option<&[Prefix]>,
    dst: &str,
    e: &mut Errs,
) -> Option<Rule> {
    let before = e.len();
    let mut prefixes = Vec::new();
    for (k, s) in r.dst_prefixes.iter().enumerate() {
        let f = format!("{at}.dst_prefixes[{k}]");
        let Some(p) = keep(e, prefix(src, s, &f)) else {
            continue;
        };
        if let Some(d) = dst_prefixes
            && !d.iter().any(|d| d.covers(&p))
        {
            e.push(src.error(
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
        .and_then(|s| keep(e, protocol(src, s, &format!("{at}.protocol"))));
    let src_ports = r
        .src_ports
        .as_ref()
        .and_then(|s| keep(e, ports(src, s, &format!("{at}.src_ports"))));
    let dst_ports = r
        .dst_ports
        .as_ref()
        .and_then(|s| keep(e, ports(src, s, &format!("{at}.dst_ports"))));
    for (p, s, k) in [
        (src_ports, &r.src_ports, "src_ports"),
        (dst_ports, &r.dst_ports, "dst_ports"),
    ] {
        if let (Some(_), Some(s)) = (p, s)
            && r.protocol.is_some() == protocol.is_some()
            && !matches!(protocol, Some(6 | 17 | 132))
        {
            e.push(src.error(
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
            .ok_or_else(|| src.error(&d.span(), f.clone(), "DSCP must be in 0..=63"));
        let Some(v) = keep(e, v) else { continue };
        if dscp.contains(&v) {
            e.push(src.error(&d.span(), f, format!("duplicate DSCP value {v}")));
        }
        dscp.push(v);
    }
    (e.len() == before).then_some(Rule {
        dst_prefixes: prefixes,
        protocol,
        src_ports,
        dst_ports,
        dscp,
    })
}
