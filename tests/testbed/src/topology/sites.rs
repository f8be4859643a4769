//! Emulated sites joined by shaped WAN links: the demo's world.
//!
//! ```text
//!  site A                                                site B
//!  [A_lan]          [A_gw]          [w0 wire]           [B_gw]          [B_lan]
//!   h0 ---------- lan0   wan0 ------ xa  br0  xb ------ wan0   lan0 ---------- h0
//!  198.18.0.2  198.18.0.1  198.19.128.1  (tbf both ways)  198.19.128.2  198.18.16.1  198.18.16.2
//! ```
//!
//! Each WAN link is a veth from each gateway into its own "wire"
//! namespace, where a bridge joins them and a tbf on each bridge port's
//! egress shapes one direction to the link's rate. Shaping lives in the
//! wire, not on the gateways' interfaces, because AF_XDP/XDP transmit
//! bypasses the qdisc layer: a tbf on the gateway's own interface would
//! not limit our dataplane. Failure injection ([`SitesTopology::set_link`],
//! [`SitesTopology::blackhole_link`]) also acts in the wire, so it works
//! whatever the gateways run. Several links between the same two sites
//! give multi-homing. Address plan: see `docs/testbed.md` and
//! [`crate::addr`].

use std::net::IpAddr;
use std::time::Duration;

use crate::addr::{self, V4};
use crate::error::{Error, Result};
use crate::link::{self, DEFAULT_MTU, EndSpec, VethEnd, VethPair};
use crate::netns::{DEFAULT_PREFIX, Netns, sweep_stale};

/// A site to emulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteSpec {
    /// Site name: 1..=12 chars of `[A-Za-z0-9_]` (used in namespace names).
    pub name: String,
}

/// A point-to-point WAN link between two sites' gateways.
#[derive(Clone, Debug, PartialEq)]
pub struct WanLinkSpec {
    /// Site at end `a`.
    pub a: String,
    /// Site at end `b`.
    pub b: String,
    /// Rate in each direction, Mbit/s (tbf).
    pub rate_mbps: f64,
    /// Link name, unique (used to look it up).
    pub name: String,
}

/// Data-driven builder of a multi-site topology.
#[derive(Clone, Debug)]
pub struct Sites {
    /// Namespace name prefix.
    pub prefix: String,
    /// Sites, in index order (index decides the LAN prefix).
    pub sites: Vec<SiteSpec>,
    /// WAN links, in index order (index decides addresses and `wan<k>`).
    pub links: Vec<WanLinkSpec>,
    /// RX/TX queues per veth end.
    pub queues: u16,
    /// MTU of every link.
    pub mtu: u32,
    /// Longest a packet may queue in a WAN shaper (tbf `latency`).
    pub queue_latency: Duration,
    /// Also number IPv6.
    pub ipv6: bool,
    /// Disable offloads on gateway and host interfaces (needs `ethtool`).
    pub disable_offloads: bool,
}

impl Default for Sites {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            sites: Vec::new(),
            links: Vec::new(),
            queues: 1,
            mtu: DEFAULT_MTU,
            queue_latency: Duration::from_millis(50),
            ipv6: true,
            disable_offloads: false,
        }
    }
}

/// One built site.
#[derive(Debug)]
pub struct SiteHandle {
    /// Its name.
    pub name: String,
    /// Its index in the builder.
    pub index: usize,
    /// The LAN host's namespace.
    pub lan_ns: Netns,
    /// The gateway's namespace.
    pub gw_ns: Netns,
    /// `a` = host `h0`, `b` = gateway `lan0`.
    pub lan: VethPair,
    /// The LAN prefix (`198.18.(16*index).0/24`).
    pub lan_prefix: V4,
}

impl SiteHandle {
    /// The host's interface (`h0`).
    pub fn host_if(&self) -> &VethEnd {
        &self.lan.a
    }
    /// The gateway's LAN interface (`lan0`).
    pub fn gw_lan_if(&self) -> &VethEnd {
        &self.lan.b
    }
}

/// One built WAN link.
#[derive(Debug)]
pub struct WanLinkHandle {
    /// What was asked for.
    pub spec: WanLinkSpec,
    /// Its index (`wan<index>` on both gateways).
    pub index: usize,
    /// Index of site `a`.
    pub a_site: usize,
    /// Index of site `b`.
    pub b_site: usize,
    /// The wire namespace (bridge `br0`, ports `xa`/`xb`, shapers).
    pub wire_ns: Netns,
    /// Gateway `a`'s end (`wan<index>`) and the wire's `xa`.
    pub a_side: VethPair,
    /// Gateway `b`'s end (`wan<index>`) and the wire's `xb`.
    pub b_side: VethPair,
    /// Shaped rate per direction, bit/s.
    pub rate_bps: u64,
}

impl WanLinkHandle {
    /// Waits until both wire ports and both gateway ends are up with
    /// active qdiscs (see [`link::wait_link_ready`]).
    fn wait_ready(&self, topo: &SitesTopology) -> Result<()> {
        for port in ["xa", "xb"] {
            link::wait_link_ready(&self.wire_ns, port, link::READY_TIMEOUT)?;
        }
        link::wait_link_ready(
            &topo.sites[self.a_site].gw_ns,
            &self.a_if().ifname,
            link::READY_TIMEOUT,
        )?;
        link::wait_link_ready(
            &topo.sites[self.b_site].gw_ns,
            &self.b_if().ifname,
            link::READY_TIMEOUT,
        )
    }

    /// Gateway `a`'s interface.
    pub fn a_if(&self) -> &VethEnd {
        &self.a_side.a
    }
    /// Gateway `b`'s interface.
    pub fn b_if(&self) -> &VethEnd {
        &self.b_side.a
    }
}

/// A built multi-site topology; dropping it removes every namespace.
#[derive(Debug)]
pub struct SitesTopology {
    /// Sites in builder order.
    pub sites: Vec<SiteHandle>,
    /// WAN links in builder order.
    pub links: Vec<WanLinkHandle>,
}

fn check_word(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::Invalid(format!(
            "{what} {s:?}: need 1..={max} chars of [A-Za-z0-9_]"
        )));
    }
    Ok(())
}

/// `rate_mbps` as bit/s, rejecting non-finite, tiny or absurd rates.
fn rate_bps(l: &WanLinkSpec) -> Result<u64> {
    let r = l.rate_mbps;
    if !r.is_finite() || !(0.001..=100_000.0).contains(&r) {
        return Err(Error::Invalid(format!(
            "link {}: rate {r} Mbit/s outside 0.001..=100000",
            l.name
        )));
    }
    // Checked above: 1e3 <= r*1e6 <= 1e11, positive and far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((r * 1e6).round() as u64)
}

impl Sites {
    /// An empty builder with defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The MON paper's triangle: sites A, B, C; links A-B 10 Mbit/s
    /// (`ab`), A-C 10 Mbit/s (`ac`), B-C 5 Mbit/s (`bc`).
    pub fn triangle() -> Self {
        Self::new()
            .site("A")
            .site("B")
            .site("C")
            .wan("A", "B", 10.0, "ab")
            .wan("A", "C", 10.0, "ac")
            .wan("B", "C", 5.0, "bc")
    }

    /// Sets the namespace prefix.
    pub fn prefix(mut self, p: &str) -> Self {
        self.prefix = p.into();
        self
    }

    /// Adds a site.
    pub fn site(mut self, name: &str) -> Self {
        self.sites.push(SiteSpec { name: name.into() });
        self
    }

    /// Adds a WAN link `a`-`b` at `rate_mbps` each way, named `name`.
    pub fn wan(mut self, a: &str, b: &str, rate_mbps: f64, name: &str) -> Self {
        self.links.push(WanLinkSpec {
            a: a.into(),
            b: b.into(),
            rate_mbps,
            name: name.into(),
        });
        self
    }

    /// Checks names, endpoints, rates and plan limits.
    pub fn validate(&self) -> Result<()> {
        if self.sites.len() > addr::MAX_SITES || self.links.len() > addr::MAX_WAN_LINKS {
            return Err(Error::Invalid(format!(
                "at most {} sites and {} links",
                addr::MAX_SITES,
                addr::MAX_WAN_LINKS
            )));
        }
        for (i, s) in self.sites.iter().enumerate() {
            check_word("site name", &s.name, 12)?;
            if self.sites[..i].iter().any(|o| o.name == s.name) {
                return Err(Error::Invalid(format!("duplicate site {:?}", s.name)));
            }
        }
        for (k, l) in self.links.iter().enumerate() {
            check_word("link name", &l.name, 32)?;
            if self.links[..k].iter().any(|o| o.name == l.name) {
                return Err(Error::Invalid(format!("duplicate link {:?}", l.name)));
            }
            let (a, b) = (self.index_of(&l.a)?, self.index_of(&l.b)?);
            if a == b {
                return Err(Error::Invalid(format!(
                    "link {} joins site {} to itself",
                    l.name, l.a
                )));
            }
            rate_bps(l)?;
        }
        Ok(())
    }

    fn index_of(&self, site: &str) -> Result<usize> {
        self.sites
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| Error::Invalid(format!("unknown site {site:?}")))
    }

    /// Creates everything. Sweeps stale namespaces of the prefix first.
    /// On error, whatever was created is removed (the guards drop).
    pub fn build(&self) -> Result<SitesTopology> {
        self.validate()?;
        sweep_stale(&self.prefix)?;
        let mut topo = SitesTopology {
            sites: Vec::new(),
            links: Vec::new(),
        };
        for (i, s) in self.sites.iter().enumerate() {
            topo.sites.push(self.build_site(i, s)?);
        }
        for (k, l) in self.links.iter().enumerate() {
            let (a, b) = (self.index_of(&l.a)?, self.index_of(&l.b)?);
            let h = self.build_link(k, l, &topo.sites[a], &topo.sites[b])?;
            topo.links.push(h);
        }
        for l in &topo.links {
            l.wait_ready(&topo)?;
        }
        Ok(topo)
    }

    fn build_site(&self, i: usize, s: &SiteSpec) -> Result<SiteHandle> {
        let lan_ns = Netns::with_tag(&self.prefix, &format!("{}_lan", s.name))?;
        let gw_ns = Netns::with_tag(&self.prefix, &format!("{}_gw", s.name))?;
        let v6 = |h| {
            if self.ipv6 {
                addr::site_lan_v6_host(i, h).map(Some)
            } else {
                Ok(None)
            }
        };
        let host = EndSpec {
            v4: Some(addr::site_lan_host_v4(i, 2)?),
            v6: v6(2)?,
            ..EndSpec::named("h0")
        };
        let gw = EndSpec {
            v4: Some(addr::site_lan_host_v4(i, 1)?),
            v6: v6(1)?,
            ..EndSpec::named("lan0")
        };
        let lan = link::veth(&lan_ns, &host, &gw_ns, &gw, self.queues, self.mtu)?;
        let gw_ip = |e: &VethEnd| e.v4.map(|v| IpAddr::V4(v.addr));
        link::route(&lan_ns, "default", gw_ip(&lan.b), Some("h0"))?;
        if let (Some(g6), Some(_)) = (lan.b.v6, lan.a.v6) {
            link::route(&lan_ns, "default", Some(IpAddr::V6(g6.addr)), Some("h0"))?;
        }
        statics(&lan_ns, &lan.a, &lan.b)?;
        statics(&gw_ns, &lan.b, &lan.a)?;
        if self.disable_offloads {
            link::disable_offloads(&lan_ns, "h0")?;
            link::disable_offloads(&gw_ns, "lan0")?;
        }
        Ok(SiteHandle {
            name: s.name.clone(),
            index: i,
            lan_ns,
            gw_ns,
            lan,
            lan_prefix: addr::site_lan_v4(i)?,
        })
    }

    fn build_link(
        &self,
        k: usize,
        l: &WanLinkSpec,
        sa: &SiteHandle,
        sb: &SiteHandle,
    ) -> Result<WanLinkHandle> {
        let rate = rate_bps(l)?;
        let wire_ns = Netns::with_tag(&self.prefix, &format!("w{k}"))?;
        // The wire is pure L2: no IPv6 autoconf chatter from its ports.
        wire_ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        wire_ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        let (a4, b4) = addr::wan_link_v4(k)?;
        let (a6, b6) = if self.ipv6 {
            let (a, b) = addr::wan_link_v6(k)?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let ifname = format!("wan{k}");
        let gw_a = EndSpec {
            v4: Some(a4),
            v6: a6,
            ..EndSpec::named(&ifname)
        };
        let gw_b = EndSpec {
            v4: Some(b4),
            v6: b6,
            ..EndSpec::named(&ifname)
        };
        let a_side = link::veth(
            &sa.gw_ns,
            &gw_a,
            &wire_ns,
            &EndSpec::named("xa"),
            self.queues,
            self.mtu,
        )?;
        let b_side = link::veth(
            &sb.gw_ns,
            &gw_b,
            &wire_ns,
            &EndSpec::named("xb"),
            self.queues,
            self.mtu,
        )?;
        wire_ns.ip(&["link", "add", "br0", "type", "bridge", "stp_state", "0"])?;
        for port in ["xa", "xb"] {
            wire_ns.ip(&["link", "set", "dev", port, "master", "br0"])?;
        }
        link::set_link_up(&wire_ns, "br0")?;
        let burst = link::default_burst(rate, self.mtu);
        for port in ["xa", "xb"] {
            link::shape(&wire_ns, port, rate, burst, self.queue_latency)?;
        }
        statics(&sa.gw_ns, &a_side.a, &b_side.a)?;
        statics(&sb.gw_ns, &b_side.a, &a_side.a)?;
        if self.disable_offloads {
            link::disable_offloads(&sa.gw_ns, &ifname)?;
            link::disable_offloads(&sb.gw_ns, &ifname)?;
        }
        Ok(WanLinkHandle {
            spec: l.clone(),
            index: k,
            a_site: sa.index,
            b_site: sb.index,
            wire_ns,
            a_side,
            b_side,
            rate_bps: rate,
        })
    }
}

/// Permanent neighbour entries on `own`'s interface for `peer`'s addresses.
fn statics(ns: &Netns, own: &VethEnd, peer: &VethEnd) -> Result<()> {
    if let Some(v4) = peer.v4 {
        link::neigh_permanent(ns, &own.ifname, IpAddr::V4(v4.addr), peer.mac)?;
    }
    if let (Some(v6), Some(_)) = (peer.v6, own.v6) {
        link::neigh_permanent(ns, &own.ifname, IpAddr::V6(v6.addr), peer.mac)?;
    }
    Ok(())
}

impl SitesTopology {
    /// The site called `name`.
    pub fn site(&self, name: &str) -> Result<&SiteHandle> {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Invalid(format!("unknown site {name:?}")))
    }

    /// The link called `name`.
    pub fn link(&self, name: &str) -> Result<&WanLinkHandle> {
        self.links
            .iter()
            .find(|l| l.spec.name == name)
            .ok_or_else(|| Error::Invalid(format!("unknown link {name:?}")))
    }

    /// All links joining sites `a` and `b` (either orientation).
    pub fn links_between(&self, a: &str, b: &str) -> Vec<&WanLinkHandle> {
        self.links
            .iter()
            .filter(|l| (l.spec.a == a && l.spec.b == b) || (l.spec.a == b && l.spec.b == a))
            .collect()
    }

    /// Every namespace name (sites' LAN and gateway, then wires).
    pub fn ns_names(&self) -> Vec<String> {
        let sites = self
            .sites
            .iter()
            .flat_map(|s| [s.lan_ns.name().to_owned(), s.gw_ns.name().to_owned()]);
        sites
            .chain(self.links.iter().map(|l| l.wire_ns.name().to_owned()))
            .collect()
    }

    /// Runs `f` on both wire ports (`xa`, `xb`) of link `name`.
    fn on_wire_ports(
        &self,
        name: &str,
        f: fn(&Netns, &str) -> Result<()>,
    ) -> Result<&WanLinkHandle> {
        let l = self.link(name)?;
        for port in ["xa", "xb"] {
            f(&l.wire_ns, port)?;
        }
        Ok(l)
    }

    /// Brings link `name` down (`up = false`) or up, from the wire side:
    /// both gateways lose/regain carrier on their `wan<k>`. Bringing it up
    /// returns once the link carries traffic again (shapers re-activated).
    pub fn set_link(&self, name: &str, up: bool) -> Result<()> {
        if up {
            self.on_wire_ports(name, link::set_link_up)?
                .wait_ready(self)
        } else {
            self.on_wire_ports(name, link::set_link_down).map(|_| ())
        }
    }

    /// Makes link `name` silently drop everything in both directions while
    /// carrier stays up (`on = false` restores it).
    pub fn blackhole_link(&self, name: &str, on: bool) -> Result<()> {
        let f = if on {
            link::blackhole
        } else {
            link::unblackhole
        };
        self.on_wire_ports(name, f).map(|_| ())
    }

    /// Changes link `name`'s rate (both directions) at run time.
    pub fn set_link_rate(
        &self,
        name: &str,
        rate_mbps: f64,
        queue_latency: Duration,
        mtu: u32,
    ) -> Result<()> {
        let l = self.link(name)?;
        let rate = rate_bps(&WanLinkSpec {
            rate_mbps,
            ..l.spec.clone()
        })?;
        for port in ["xa", "xb"] {
            link::shape(
                &l.wire_ns,
                port,
                rate,
                link::default_burst(rate, mtu),
                queue_latency,
            )?;
        }
        Ok(())
    }

    /// Plain kernel routing, for baselines and smoke tests: turns on
    /// forwarding in every gateway and routes each remote LAN over the
    /// first direct link to it (sites without a direct link get no route).
    pub fn install_kernel_routes(&self) -> Result<()> {
        for s in &self.sites {
            link::enable_forwarding(&s.gw_ns)?;
        }
        for s in &self.sites {
            for r in &self.sites {
                if r.index == s.index {
                    continue;
                }
                let Some(l) = self.links.iter().find(|l| {
                    (l.a_site, l.b_site) == (s.index, r.index)
                        || (l.a_site, l.b_site) == (r.index, s.index)
                }) else {
                    continue;
                };
                let (own, peer) = if l.a_site == s.index {
                    (l.a_if(), l.b_if())
                } else {
                    (l.b_if(), l.a_if())
                };
                if let Some(p4) = peer.v4 {
                    link::route(
                        &s.gw_ns,
                        r.lan_prefix,
                        Some(IpAddr::V4(p4.addr)),
                        Some(&own.ifname),
                    )?;
                }
                if let (Some(p6), Some(h6)) = (peer.v6, r.host_if().v6) {
                    link::route(
                        &s.gw_ns,
                        h6.network(),
                        Some(IpAddr::V6(p6.addr)),
                        Some(&own.ifname),
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangle_validates() {
        let t = Sites::triangle();
        t.validate().unwrap();
        assert_eq!(
            t.links
                .iter()
                .map(|l| rate_bps(l).unwrap())
                .collect::<Vec<_>>(),
            [10_000_000, 10_000_000, 5_000_000]
        );
    }

    #[test]
    fn bad_specs_are_errors() {
        let ab = || Sites::new().site("A").site("B");
        assert!(Sites::new().site("A").site("A").validate().is_err());
        let bad = [
            Sites::new().site("A").wan("A", "B", 1.0, "x"),
            Sites::new().site("A").wan("A", "A", 1.0, "x"),
            ab().wan("A", "B", f64::NAN, "x"),
            ab().wan("A", "B", -1.0, "x"),
            ab().wan("A", "B", 1.0, "x").wan("B", "A", 1.0, "x"),
            Sites::new().site("bad name"),
            Sites::new().site("waytoolongsitename"),
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        // Multi-homing: two links between the same pair is fine.
        ab().wan("A", "B", 1.0, "x")
            .wan("B", "A", 2.0, "y")
            .validate()
            .unwrap();
    }
}
