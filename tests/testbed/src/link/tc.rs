//! `tc` impairments: egress blackholes (failure injection), tbf shaping
//! (WAN link rate) and htb with a class per flow (kernel-gateway baseline).
//! This kernel has no `netem`: delay and random loss cannot be emulated.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// `tc` filter preference used for blackholes (so they can be removed
/// without touching other egress filters).
pub const BLACKHOLE_PREF: &str = "49";
/// Name of the always-down veth used as a drop target when the kernel has
/// no `matchall`/`gact` (see [`blackhole`]).
pub const DROP_DEV: &str = "mgdrop0";

fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Command { stderr, .. }
        if stderr.contains("Cannot find") || stderr.contains("No such file") || stderr.contains("Invalid handle"))
}

/// Silently drops everything `dev` transmits, keeping the link up (the
/// failure a carrier check cannot see). Runs on the clsact egress hook,
/// before the root qdisc, so it composes with [`shape`]. Undo with
/// [`unblackhole`].
///
/// Prefers `matchall action drop`. Kernels without `cls_matchall`/`act_gact`
/// (like the CI kernel) get `u32 match u32 0 0 action mirred egress
/// redirect dev mgdrop0`, an always-down veth: forwarded packets vanish;
/// local senders may see `ENOBUFS`.
///
/// Only traffic that passes the qdisc layer is affected: XDP_TX/redirect
/// and AF_XDP transmit bypass it, so blackhole the far side or a
/// kernel-forwarding hop (the `Sites` wire namespaces) for those.
pub fn blackhole(ns: &Netns, dev: &str) -> Result<()> {
    ns.tc(&["qdisc", "replace", "dev", dev, "clsact"])?;
    let base = [
        "filter",
        "replace",
        "dev",
        dev,
        "egress",
        "pref",
        BLACKHOLE_PREF,
    ];
    let mut matchall = base.to_vec();
    matchall.extend(["matchall", "action", "drop"]);
    if ns.tc(&matchall).is_ok() {
        return Ok(());
    }
    if ns.ip(&["link", "show", "dev", DROP_DEV]).is_err() {
        ns.ip(&[
            "link", "add", DROP_DEV, "type", "veth", "peer", "name", "mgdrop1",
        ])?;
    }
    let mut mirred = base.to_vec();
    mirred.extend([
        "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", DROP_DEV,
    ]);
    ns.tc(&mirred).map(drop)
}

/// Removes a [`blackhole`] from `dev` (no-op if there is none).
pub fn unblackhole(ns: &Netns, dev: &str) -> Result<()> {
    match ns.tc(&[
        "filter",
        "del",
        "dev",
        dev,
        "egress",
        "pref",
        BLACKHOLE_PREF,
    ]) {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A tbf bucket big enough for `rate_bps` and frames of `mtu` bytes:
/// max(4 ms of traffic, 4 full frames), so tbf never stalls on one frame.
pub fn default_burst(rate_bps: u64, mtu: u32) -> u32 {
    let four_ms = rate_bps / 8 / 250;
    let frames = 4 * (u64::from(mtu) + 14);
    u32::try_from(four_ms.max(frames)).unwrap_or(u32::MAX)
}

/// Shapes `dev`'s egress to `rate_bps` with a token bucket
/// (`tc qdisc replace dev DEV root handle 1: tbf rate R burst B latency L`):
/// `burst_bytes` is the bucket, `latency` the longest a packet may queue
/// (the queue limit). Replaces any root qdisc.
pub fn shape(
    ns: &Netns,
    dev: &str,
    rate_bps: u64,
    burst_bytes: u32,
    latency: Duration,
) -> Result<()> {
    if rate_bps < 8 {
        return Err(Error::Invalid(format!("tbf rate {rate_bps} bit/s")));
    }
    if burst_bytes < 1514 {
        return Err(Error::Invalid(format!(
            "tbf burst {burst_bytes} B below one full frame (tbf would drop them)"
        )));
    }
    let us = latency.as_micros().max(1).to_string();
    ns.tc(&[
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "handle",
        "1:",
        "tbf",
        "rate",
        &format!("{rate_bps}bit"),
        "burst",
        &burst_bytes.to_string(),
        "latency",
        &format!("{us}us"),
    ])
    .map(drop)
}

/// Removes any root qdisc from `dev` (back to the default; no-op if none).
pub fn unshape(ns: &Netns, dev: &str) -> Result<()> {
    match ns.tc(&["qdisc", "del", "dev", dev, "root"]) {
        Ok(_) => Ok(()),
        Err(Error::Command { stderr, .. }) if stderr.contains("handle of zero") => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One htb class: `1:<id>` under the link class `1:1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtbClass {
    /// Class minor id, >= 2 (`1:1` is the link).
    pub id: u16,
    /// Guaranteed rate, bit/s.
    pub rate_bps: u64,
    /// Borrowing ceiling, bit/s (>= `rate_bps`).
    pub ceil_bps: u64,
}

/// An htb tree: link class `1:1` at `link_bps`, one child class per flow,
/// and a default class for unclassified traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtbSpec {
    /// Rate of the whole link, bit/s.
    pub link_bps: u64,
    /// Per-flow classes.
    pub classes: Vec<HtbClass>,
    /// Minor id of the class unclassified packets go to (must be listed).
    pub default_class: u16,
}

/// Which packets go to an htb class (IPv4; unset fields match anything).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMatch {
    /// Source address.
    pub src: Option<Ipv4Addr>,
    /// Destination address.
    pub dst: Option<Ipv4Addr>,
    /// IP protocol (6 TCP, 17 UDP).
    pub proto: Option<u8>,
    /// Source port (TCP/UDP, no IP options).
    pub sport: Option<u16>,
    /// Destination port (TCP/UDP, no IP options).
    pub dport: Option<u16>,
}

/// Installs `spec` as `dev`'s root qdisc and one u32 filter per
/// `(class id, match)` pair. Replaces any root qdisc.
pub fn shape_htb(ns: &Netns, dev: &str, spec: &HtbSpec, flows: &[(u16, FlowMatch)]) -> Result<()> {
    let ids: Vec<u16> = spec.classes.iter().map(|c| c.id).collect();
    if spec
        .classes
        .iter()
        .any(|c| c.id < 2 || c.ceil_bps < c.rate_bps || c.rate_bps < 8)
    {
        return Err(Error::Invalid(
            "htb class ids must be >= 2, rate >= 8 bit/s, ceil >= rate".into(),
        ));
    }
    if !ids.contains(&spec.default_class) || flows.iter().any(|(id, _)| !ids.contains(id)) {
        return Err(Error::Invalid(
            "htb default class and flow classes must be listed".into(),
        ));
    }
    let link = format!("{}bit", spec.link_bps);
    let default = format!("{:x}", spec.default_class);
    ns.tc(&[
        "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", &default,
    ])?;
    ns.tc(&[
        "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", &link, "ceil",
        &link,
    ])?;
    for c in &spec.classes {
        let (id, rate, ceil) = (
            format!("1:{:x}", c.id),
            format!("{}bit", c.rate_bps),
            format!("{}bit", c.ceil_bps),
        );
        ns.tc(&[
            "class", "add", "dev", dev, "parent", "1:1", "classid", &id, "htb", "rate", &rate,
            "ceil", &ceil,
        ])?;
    }
    for (id, m) in flows {
        let flowid = format!("1:{id:x}");
        let mut args: Vec<String> = [
            "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
        ]
        .map(String::from)
        .to_vec();
        args.extend(u32_matches(m));
        args.extend(["flowid".into(), flowid]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        ns.tc(&argv)?;
    }
    Ok(())
}

/// The `match ...` words of a u32 filter for `m` (`match u32 0 0` when
/// `m` matches everything).
fn u32_matches(m: &FlowMatch) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    let mut add = |parts: [String; 4]| {
        w.push("match".into());
        w.extend(parts);
    };
    let s = |x: &str| x.to_owned();
    if let Some(ip) = m.src {
        add([s("ip"), s("src"), format!("{ip}/32"), String::new()]);
    }
    if let Some(ip) = m.dst {
        add([s("ip"), s("dst"), format!("{ip}/32"), String::new()]);
    }
    if let Some(p) = m.proto {
        add([s("ip"), s("protocol"), p.to_string(), s("0xff")]);
    }
    if let Some(p) = m.sport {
        add([s("ip"), s("sport"), p.to_string(), s("0xffff")]);
    }
    if let Some(p) = m.dport {
        add([s("ip"), s("dport"), p.to_string(), s("0xffff")]);
    }
    w.retain(|x| !x.is_empty());
    if w.is_empty() {
        w = ["match", "u32", "0", "0"].map(String::from).to_vec();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_covers_frames_and_rate() {
        assert_eq!(default_burst(10_000_000, 1500), 6_056);
        assert_eq!(default_burst(1_000_000_000, 1500), 500_000);
        assert!(default_burst(u64::MAX, 1500) == u32::MAX);
    }

    #[test]
    fn u32_match_words() {
        assert_eq!(
            u32_matches(&FlowMatch::default()),
            ["match", "u32", "0", "0"]
        );
        let m = FlowMatch {
            dst: Some(Ipv4Addr::new(198, 18, 0, 1)),
            proto: Some(17),
            dport: Some(53),
            ..Default::default()
        };
        assert_eq!(
            u32_matches(&m).join(" "),
            "match ip dst 198.18.0.1/32 match ip protocol 17 0xff match ip dport 53 0xffff"
        );
    }
}
