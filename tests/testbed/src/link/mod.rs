//! Links between namespaces and their L3 plumbing: veth pairs with queues,
//! MTU, MACs and addresses; routes; static neighbours; forwarding; offloads;
//! administrative up/down. `tc` based impairments live in [`tc`].

pub mod tc;

use std::fmt::Display;
use std::net::IpAddr;

use crate::addr::{Mac, V4, V6, check_ifname};
use crate::error::{Error, Result};
use crate::netns::Netns;

pub use tc::{
    FlowMatch, HtbClass, HtbSpec, blackhole, default_burst, shape, shape_htb, unblackhole, unshape,
};

/// Default MTU of testbed links.
pub const DEFAULT_MTU: u32 = 1500;

/// One end of a veth pair as requested.
#[derive(Clone, Debug, Default)]
pub struct EndSpec {
    /// Interface name (<= 15 chars).
    pub ifname: String,
    /// MAC; derived when `None` (from the IPv4 address, else the names).
    pub mac: Option<Mac>,
    /// IPv4 address with prefix length.
    pub v4: Option<V4>,
    /// IPv6 address with prefix length (added with `nodad`).
    pub v6: Option<V6>,
}

impl EndSpec {
    /// An end with just a name.
    pub fn named(ifname: &str) -> Self {
        Self {
            ifname: ifname.to_owned(),
            ..Self::default()
        }
    }

    /// Sets the IPv4 address.
    pub fn v4(mut self, v4: V4) -> Self {
        self.v4 = Some(v4);
        self
    }

    /// Sets the IPv6 address.
    pub fn v6(mut self, v6: V6) -> Self {
        self.v6 = Some(v6);
        self
    }

    /// Sets the MAC.
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// A created veth end: where it is and what it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethEnd {
    /// Namespace name.
    pub ns: String,
    /// Interface name.
    pub ifname: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its IPv4 address, if any.
    pub v4: Option<V4>,
    /// Its IPv6 address, if any.
    pub v6: Option<V6>,
}

/// Both ends of a created veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPair {
    /// End created in the first namespace.
    pub a: VethEnd,
    /// End created in the second namespace.
    pub b: VethEnd,
    /// RX and TX queue count of each end.
    pub queues: u16,
    /// MTU of both ends.
    pub mtu: u32,
}

fn hash16(s: &str) -> u16 {
    // FNV-1a folded to 16 bits: stable across runs and platforms.
    let h = s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, d] = h.to_be_bytes();
    u16::from_be_bytes([a ^ c, b ^ d])
}

fn derive_mac(end: &EndSpec, peer: &EndSpec, second: bool) -> Mac {
    if let Some(m) = end.mac {
        return m;
    }
    if let Some(v4) = end.v4 {
        return Mac::from_ipv4(v4.addr);
    }
    let mut m = Mac::from_ids(hash16(&end.ifname), hash16(&peer.ifname));
    m.0[1] = Mac::TAG + if second { 2 } else { 1 };
    m
}

/// Creates a veth pair between `a` and `b` (which may be the same
/// namespace) with `queues` RX/TX queues per end (XDP on veth wants each
/// end's RX queue count >= its peer's TX queue count: equal counts satisfy
/// that), the given MTU, MACs and addresses, and brings both ends up.
pub fn veth(
    a: &Netns,
    end_a: &EndSpec,
    b: &Netns,
    end_b: &EndSpec,
    queues: u16,
    mtu: u32,
) -> Result<VethPair> {
    check_ifname(&end_a.ifname)?;
    check_ifname(&end_b.ifname)?;
    if queues == 0 {
        return Err(Error::Invalid("veth needs at least one queue".into()));
    }
    if !(68..=65535).contains(&mtu) {
        return Err(Error::Invalid(format!("MTU {mtu} outside 68..=65535")));
    }
    let mac_a = derive_mac(end_a, end_b, false);
    let mac_b = derive_mac(end_b, end_a, true);
    let (q, m, ma, mb) = (
        queues.to_string(),
        mtu.to_string(),
        mac_a.to_string(),
        mac_b.to_string(),
    );
    // Created directly inside `a` (and the peer directly inside `b`), so the
    // names never meet in the root namespace.
    a.ip(&[
        "link",
        "add",
        &end_a.ifname,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "mtu",
        &m,
        "address",
        &ma,
        "type",
        "veth",
        "peer",
        "name",
        &end_b.ifname,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "mtu",
        &m,
        "address",
        &mb,
        "netns",
        b.name(),
    ])?;
    for (ns, end) in [(a, end_a), (b, end_b)] {
        add_addresses(ns, &end.ifname, end.v4, end.v6)?;
        set_link_up(ns, &end.ifname)?;
    }
    let made = |ns: &Netns, e: &EndSpec, mac| VethEnd {
        ns: ns.name().to_owned(),
        ifname: e.ifname.clone(),
        mac,
        v4: e.v4,
        v6: e.v6,
    };
    Ok(VethPair {
        a: made(a, end_a, mac_a),
        b: made(b, end_b, mac_b),
        queues,
        mtu,
    })
}

/// The short form: a veth pair `name_a`@`a` <-> `name_b`@`b` with `queues`
/// queues, default MTU, derived MACs, no addresses, both ends up.
pub fn veth_pair(
    a: &Netns,
    name_a: &str,
    b: &Netns,
    name_b: &str,
    queues: u16,
) -> Result<VethPair> {
    veth(
        a,
        &EndSpec::named(name_a),
        b,
        &EndSpec::named(name_b),
        queues,
        DEFAULT_MTU,
    )
}

/// Adds addresses to `dev` (IPv6 with `nodad`, so it is usable at once).
pub fn add_addresses(ns: &Netns, dev: &str, v4: Option<V4>, v6: Option<V6>) -> Result<()> {
    if let Some(v4) = v4 {
        ns.ip(&["addr", "add", &v4.to_string(), "dev", dev])?;
    }
    if let Some(v6) = v6 {
        ns.ip(&["-6", "addr", "add", &v6.to_string(), "dev", dev, "nodad"])?;
    }
    Ok(())
}

/// Sets the MTU of `dev`.
pub fn set_mtu(ns: &Netns, dev: &str, mtu: u32) -> Result<()> {
    ns.ip(&["link", "set", "dev", dev, "mtu", &mtu.to_string()])
        .map(drop)
}

/// Administratively brings `dev` up.
pub fn set_link_up(ns: &Netns, dev: &str) -> Result<()> {
    ns.ip(&["link", "set", "dev", dev, "up"]).map(drop)
}

/// Administratively brings `dev` down (failure injection: a veth's peer
/// then loses carrier too).
pub fn set_link_down(ns: &Netns, dev: &str) -> Result<()> {
    ns.ip(&["link", "set", "dev", dev, "down"]).map(drop)
}

/// Adds or replaces a route: `ip route replace DST [via VIA] [dev DEV]`.
/// `dst` is a prefix (`198.19.0.0/16`, `2001:2::/48`) or `default`; the
/// family follows `via`/`dst`.
pub fn route(ns: &Netns, dst: impl Display, via: Option<IpAddr>, dev: Option<&str>) -> Result<()> {
    let dst = dst.to_string();
    let v6 = via.is_some_and(|v| v.is_ipv6()) || dst.contains(':');
    let via = via.map(|v| v.to_string());
    let mut args = vec![
        if v6 { "-6" } else { "-4" },
        "route",
        "replace",
        dst.as_str(),
    ];
    if let Some(v) = &via {
        args.extend(["via", v.as_str()]);
    }
    if let Some(d) = dev {
        args.extend(["dev", d]);
    }
    ns.ip(&args).map(drop)
}

/// Installs a permanent neighbour entry so traffic never waits for ARP/ND:
/// `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
pub fn neigh_permanent(ns: &Netns, dev: &str, ip: IpAddr, mac: Mac) -> Result<()> {
    ns.ip(&[
        "neigh",
        "replace",
        &ip.to_string(),
        "lladdr",
        &mac.to_string(),
        "dev",
        dev,
        "nud",
        "permanent",
    ])
    .map(drop)
}

/// Turns on IPv4 and IPv6 forwarding in the namespace.
pub fn enable_forwarding(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")
}

/// Turns IPv4 and IPv6 forwarding off again.
pub fn disable_forwarding(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv4.ip_forward", "0")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "0")
}

/// Disables TX checksum offload, TSO, GSO and GRO on `dev`
/// (`ethtool -K dev tx off tso off gso off gro off`).
///
/// Why: a veth "offloads" by not doing the work. With `tx` checksumming on,
/// the kernel hands the peer skbs whose L4 checksum is only partial
/// (CHECKSUM_PARTIAL): an XDP program or AF_XDP socket sees, and a
/// userspace forwarder re-emits, frames with wrong checksums. With
/// TSO/GSO on, a local TCP sender emits 64 KiB super-frames far above the
/// MTU, which native XDP on veth cannot take (single-buffer XDP needs each
/// frame to fit a page; the kernel even refuses to attach XDP while the
/// peer's MTU is above ~3.5 KiB). GRO off keeps received frames
/// wire-sized. Call this on every end that originates or receives
/// traffic for a userspace dataplane. veth has no LRO (fixed off).
pub fn disable_offloads(ns: &Netns, dev: &str) -> Result<()> {
    ns.exec(&[
        "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
    ])
    .map(drop)
}

/// The MAC of `dev` as the kernel reports it.
pub fn read_mac(ns: &Netns, dev: &str) -> Result<Mac> {
    let out = ns.ip(&["-o", "link", "show", "dev", dev])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| Error::Invalid(format!("no link/ether for {dev} in {}", ns.name())))?;
    parse_mac(word)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts
            .next()
            .ok_or_else(|| Error::Invalid(format!("MAC {s:?}")))?;
        *b = u8::from_str_radix(p, 16).map_err(|_| Error::Invalid(format!("MAC {s:?}")))?;
    }
    if parts.next().is_some() {
        return Err(Error::Invalid(format!("MAC {s:?}")));
    }
    Ok(Mac(m))
}

/// True when `dev` is administratively up and has carrier (`LOWER_UP`).
pub fn is_up(ns: &Netns, dev: &str) -> Result<bool> {
    let out = ns.ip(&["-o", "link", "show", "dev", dev])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let flags = text
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or("");
    Ok(flags.split(',').any(|f| f == "UP") && flags.split(',').any(|f| f == "LOWER_UP"))
}

/// Waits (polling, at most `timeout`) until `dev` is up, has carrier and
/// its qdisc is active. After carrier returns the kernel re-activates the
/// qdisc from the deferred link-watch work (up to ~1 s later); until then a
/// device with a real root qdisc (tbf, htb) shows `qdisc noop` and drops
/// everything. Errors out with the last seen state on timeout.
pub fn wait_link_ready(ns: &Netns, dev: &str, timeout: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = ns.ip(&["-o", "link", "show", "dev", dev])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = text
            .split('<')
            .nth(1)
            .and_then(|s| s.split('>').next())
            .unwrap_or("");
        let up = flags.split(',').any(|f| f == "UP") && flags.split(',').any(|f| f == "LOWER_UP");
        if up && !text.contains("qdisc noop") {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "{dev} in {} not ready after {timeout:?}: {}",
                ns.name(),
                text.trim()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How long topology builders wait for links to become ready.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_roundtrip_and_rejects_garbage() {
        let m = Mac([0x02, 0x6d, 0xc6, 0x12, 0, 1]);
        assert_eq!(parse_mac(&m.to_string()).unwrap(), m);
        for bad in [
            "",
            "02:6d",
            "02:6d:c6:12:00:01:00",
            "zz:6d:c6:12:00:01",
            "002:6d:c6:12:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_macs_differ_per_end_even_with_equal_names() {
        let a = EndSpec::named("wan0");
        let b = EndSpec::named("wan0");
        assert_ne!(derive_mac(&a, &b, false), derive_mac(&b, &a, true));
        assert!(derive_mac(&a, &b, false).is_local_unicast());
    }
}
