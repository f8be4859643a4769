//! `gen — dut — sink`: the forwarding benchmark topology.
//!
//! ```text
//!  [gen]                 [dut]                   [sink]
//!  gen0 ------------- dut0     dut1 ------------ sink0
//!  198.18.0.1/24  198.18.0.2/24  198.19.0.2/24   198.19.0.1/24
//!  2001:2::1/64   2001:2::2/64   2001:2:0:1::2   2001:2:0:1::1
//! ```
//!
//! gen routes `198.19.0.0/16` (and `2001:2:0:1::/64`) via dut; sink routes
//! `198.18.0.0/16` (and `2001:2::/64`) via dut; dut routes `198.19.0.0/16`
//! to sink and `198.18.0.0/16` to gen, so many-flow tests can vary the
//! destination over `198.19.0.0/16`. Every neighbour is static. dut does
//! NOT forward until [`ForwardTopology::set_kernel_forwarding`] says so:
//! it runs either the kernel or our dataplane.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::{Mac, V4, V6};
use crate::error::Result;
use crate::link::{self, DEFAULT_MTU, EndSpec, VethEnd};
use crate::netns::{DEFAULT_PREFIX, Netns, sweep_stale};

/// Options for [`ForwardTopology`].
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// Namespace name prefix.
    pub prefix: String,
    /// RX/TX queues per veth end.
    pub queues: u16,
    /// MTU of both links.
    pub mtu: u32,
    /// Also configure IPv6 addresses, routes and neighbours.
    pub ipv6: bool,
    /// Disable checksum/segmentation offloads on all four ends (see
    /// [`link::disable_offloads`]); needs `ethtool`.
    pub disable_offloads: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            queues: 1,
            mtu: DEFAULT_MTU,
            ipv6: true,
            disable_offloads: true,
        }
    }
}

/// Three namespaces `gen —veth— dut —veth— sink`. Dropping it removes all.
#[derive(Debug)]
pub struct ForwardTopology {
    /// Traffic generator namespace.
    pub gen_ns: Netns,
    /// Device-under-test namespace.
    pub dut_ns: Netns,
    /// Sink namespace.
    pub sink_ns: Netns,
    /// gen0 (in gen) — dut0 (in dut).
    pub gen_link: link::VethPair,
    /// dut1 (in dut) — sink0 (in sink).
    pub sink_link: link::VethPair,
}

/// gen side IPv4 addresses.
pub const GEN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// dut's address on the gen side.
pub const DUT_GEN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// dut's address on the sink side.
pub const DUT_SINK_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// sink's address.
pub const SINK_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// gen's IPv6 address.
pub const GEN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// dut's IPv6 address on the gen side.
pub const DUT_GEN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// dut's IPv6 address on the sink side.
pub const DUT_SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2);
/// sink's IPv6 address.
pub const SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);

impl ForwardTopology {
    /// Builds the topology with `queues` queues per veth end and defaults
    /// otherwise (prefix `mgt-`, MTU 1500, IPv6 on, offloads off).
    pub fn new(queues: u16) -> Result<Self> {
        Self::with_options(&ForwardOptions {
            queues,
            ..ForwardOptions::default()
        })
    }

    /// Builds the topology; sweeps stale namespaces of `opts.prefix` first.
    pub fn with_options(opts: &ForwardOptions) -> Result<Self> {
        sweep_stale(&opts.prefix)?;
        let gen_ns = Netns::with_tag(&opts.prefix, "gen")?;
        let dut_ns = Netns::with_tag(&opts.prefix, "dut")?;
        let sink_ns = Netns::with_tag(&opts.prefix, "sink")?;
        let v6 = |a: Ipv6Addr| opts.ipv6.then_some(V6::new(a, 64));
        let end = |name: &str, a4: Ipv4Addr, a6: Ipv6Addr| EndSpec {
            ifname: name.into(),
            mac: Some(Mac::from_ipv4(a4)),
            v4: Some(V4::new(a4, 24)),
            v6: v6(a6),
        };
        let gen_link = link::veth(
            &gen_ns,
            &end("gen0", GEN_V4, GEN_V6),
            &dut_ns,
            &end("dut0", DUT_GEN_V4, DUT_GEN_V6),
            opts.queues,
            opts.mtu,
        )?;
        let sink_link = link::veth(
            &dut_ns,
            &end("dut1", DUT_SINK_V4, DUT_SINK_V6),
            &sink_ns,
            &end("sink0", SINK_V4, SINK_V6),
            opts.queues,
            opts.mtu,
        )?;
        let t = Self {
            gen_ns,
            dut_ns,
            sink_ns,
            gen_link,
            sink_link,
        };
        if opts.disable_offloads {
            for (ns, e) in t.ends() {
                link::disable_offloads(ns, &e.ifname)?;
            }
        }
        t.plumb(opts.ipv6)?;
        for (ns, e) in t.ends() {
            link::wait_link_ready(ns, &e.ifname, link::READY_TIMEOUT)?;
        }
        Ok(t)
    }

    fn ends(&self) -> [(&Netns, &VethEnd); 4] {
        [
            (&self.gen_ns, &self.gen_link.a),
            (&self.dut_ns, &self.gen_link.b),
            (&self.dut_ns, &self.sink_link.a),
            (&self.sink_ns, &self.sink_link.b),
        ]
    }

    fn plumb(&self, ipv6: bool) -> Result<()> {
        let (g, d0, d1, s) = (
            &self.gen_link.a,
            &self.gen_link.b,
            &self.sink_link.a,
            &self.sink_link.b,
        );
        let v4 = |ip: Ipv4Addr| Some(IpAddr::V4(ip));
        link::route(
            &self.gen_ns,
            "198.19.0.0/16",
            v4(DUT_GEN_V4),
            Some(&g.ifname),
        )?;
        link::route(
            &self.sink_ns,
            "198.18.0.0/16",
            v4(DUT_SINK_V4),
            Some(&s.ifname),
        )?;
        link::route(&self.dut_ns, "198.19.0.0/16", v4(SINK_V4), Some(&d1.ifname))?;
        link::route(&self.dut_ns, "198.18.0.0/16", v4(GEN_V4), Some(&d0.ifname))?;
        link::neigh_permanent(&self.gen_ns, &g.ifname, DUT_GEN_V4.into(), d0.mac)?;
        link::neigh_permanent(&self.dut_ns, &d0.ifname, GEN_V4.into(), g.mac)?;
        link::neigh_permanent(&self.dut_ns, &d1.ifname, SINK_V4.into(), s.mac)?;
        link::neigh_permanent(&self.sink_ns, &s.ifname, DUT_SINK_V4.into(), d1.mac)?;
        if ipv6 {
            let v6 = |ip: Ipv6Addr| Some(IpAddr::V6(ip));
            link::route(
                &self.gen_ns,
                "2001:2:0:1::/64",
                v6(DUT_GEN_V6),
                Some(&g.ifname),
            )?;
            link::route(
                &self.sink_ns,
                "2001:2::/64",
                v6(DUT_SINK_V6),
                Some(&s.ifname),
            )?;
            link::neigh_permanent(&self.gen_ns, &g.ifname, DUT_GEN_V6.into(), d0.mac)?;
            link::neigh_permanent(&self.dut_ns, &d0.ifname, GEN_V6.into(), g.mac)?;
            link::neigh_permanent(&self.dut_ns, &d1.ifname, SINK_V6.into(), s.mac)?;
            link::neigh_permanent(&self.sink_ns, &s.ifname, DUT_SINK_V6.into(), d1.mac)?;
        }
        Ok(())
    }

    /// Turns the kernel's IPv4/IPv6 forwarding in dut on or off.
    pub fn set_kernel_forwarding(&self, on: bool) -> Result<()> {
        if on {
            link::enable_forwarding(&self.dut_ns)
        } else {
            link::disable_forwarding(&self.dut_ns)
        }
    }

    /// Names of the three namespaces (gen, dut, sink).
    pub fn ns_names(&self) -> [&str; 3] {
        [self.gen_ns.name(), self.dut_ns.name(), self.sink_ns.name()]
    }

    /// gen's interface (`gen0`).
    pub fn gen_if(&self) -> &VethEnd {
        &self.gen_link.a
    }
    /// dut's interface towards gen (`dut0`).
    pub fn dut_in_if(&self) -> &VethEnd {
        &self.gen_link.b
    }
    /// dut's interface towards sink (`dut1`).
    pub fn dut_out_if(&self) -> &VethEnd {
        &self.sink_link.a
    }
    /// sink's interface (`sink0`).
    pub fn sink_if(&self) -> &VethEnd {
        &self.sink_link.b
    }
}
