//! Site configurations (mongate's TOML, `docs/config.md`) for a topology:
//! every WAN link of a site is one of its uplinks, every other site a peer
//! reachable at all its WAN addresses. Classes, flows and the plan come from
//! an [`OverlaySpec`]; the text is generated here so the testbed needs no
//! dependency on the dataplane. [`SitesTopology::site_config`] writes a built
//! topology's files, [`Sites::site_config`] the same files from the address
//! plan alone (no namespaces: what `docs/examples/triangle/` is checked against).

use std::net::Ipv4Addr;

use super::sites::{Sites, SitesTopology};
use crate::addr::{self, V4, V6};
use crate::error::{Error, Result};

/// A classification rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSpec {
    /// `tcp`, `udp`, ... (`None`: any).
    pub protocol: Option<String>,
    /// Destination ports, `"5000"` or `"5000-5999"` (`None`: any).
    pub dst_ports: Option<String>,
}

/// A traffic class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    /// Class id.
    pub id: String,
    /// Source site.
    pub source: String,
    /// Destination site.
    pub destination: String,
    /// Class type (free text, e.g. `bulk`).
    pub kind: String,
    /// Rules (empty: the class matches nothing locally).
    pub rules: Vec<RuleSpec>,
    /// `best_effort` or `drop`.
    pub overflow: String,
}

/// A flow: a class on a route of site names.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSpec {
    /// Flow id.
    pub id: String,
    /// Its class.
    pub class: String,
    /// Sites, source first.
    pub route: Vec<String>,
}

/// A plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanSpec {
    /// Epoch.
    pub epoch: u64,
    /// `(class id, admitted sessions)`.
    pub classes: Vec<(String, u32)>,
    /// `(flow id, per-session rate Mbit/s, MONtra weight)`.
    pub flows: Vec<(String, f64, f64)>,
}

/// The organisation's overlay: what every site's file shares.
#[derive(Clone, Debug, PartialEq)]
pub struct OverlaySpec {
    /// GENEVE VNI.
    pub vni: u32,
    /// Classes.
    pub classes: Vec<ClassSpec>,
    /// Flows.
    pub flows: Vec<FlowSpec>,
    /// Plan written into every file (`None`: plans come from the control).
    pub plan: Option<PlanSpec>,
    /// Keys of every site (`None`: `[security] mode = "off"`, for tests that
    /// run gateways without control processes, which run the handshakes).
    pub keys: Option<Vec<SiteKey>>,
}

/// A site's key pair as its file and its peers' files name it.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteKey {
    /// Site name.
    pub site: String,
    /// Its private key file (base64, mode 0600: `mongate keygen --out`).
    pub private_key_file: std::path::PathBuf,
    /// Its public key (base64).
    pub public_key: String,
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What a site file needs of a topology: names, interfaces, addresses.
struct Layout {
    sites: Vec<SiteLayout>,
    links: Vec<LinkLayout>,
}

struct SiteLayout {
    name: String,
    /// The gateway's LAN interface.
    lan_if: String,
    lan_prefix: V4,
    /// The gateway's LAN IPv6 address, if any.
    lan_v6: Option<V6>,
}

struct LinkLayout {
    name: String,
    rate_mbps: f64,
    /// Site index and the gateway's interface and IPv4 address at each end.
    ends: [(usize, String, Option<Ipv4Addr>); 2],
}

impl SitesTopology {
    fn layout(&self) -> Layout {
        Layout {
            sites: self
                .sites
                .iter()
                .map(|s| SiteLayout {
                    name: s.name.clone(),
                    lan_if: s.gw_lan_if().ifname.clone(),
                    lan_prefix: s.lan_prefix,
                    lan_v6: s.gw_lan_if().v6,
                })
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| LinkLayout {
                    name: l.spec.name.clone(),
                    rate_mbps: l.spec.rate_mbps,
                    ends: [
                        (
                            l.a_site,
                            l.a_if().ifname.clone(),
                            l.a_if().v4.map(|v| v.addr),
                        ),
                        (
                            l.b_site,
                            l.b_if().ifname.clone(),
                            l.b_if().v4.map(|v| v.addr),
                        ),
                    ],
                })
                .collect(),
        }
    }

    /// The configuration file of site `name` for `spec`.
    pub fn site_config(&self, name: &str, spec: &OverlaySpec) -> Result<String> {
        self.layout().site_config(name, spec)
    }
}

impl Sites {
    /// The layout [`Sites::build`] creates (same names and address plan).
    fn layout(&self) -> Result<Layout> {
        self.validate()?;
        let mut sites = Vec::new();
        for (i, s) in self.sites.iter().enumerate() {
            let lan_v6 = if self.ipv6 {
                Some(addr::site_lan_v6_host(i, 1)?)
            } else {
                None
            };
            sites.push(SiteLayout {
                name: s.name.clone(),
                lan_if: "lan0".into(),
                lan_prefix: addr::site_lan_v4(i)?,
                lan_v6,
            });
        }
        let index = |n: &str| self.sites.iter().position(|s| s.name == n).unwrap_or(0);
        let mut links = Vec::new();
        for (k, l) in self.links.iter().enumerate() {
            let (a4, b4) = addr::wan_link_v4(k)?;
            let ifname = format!("wan{k}");
            links.push(LinkLayout {
                name: l.name.clone(),
                rate_mbps: l.rate_mbps,
                ends: [
                    (index(&l.a), ifname.clone(), Some(a4.addr)),
                    (index(&l.b), ifname, Some(b4.addr)),
                ],
            });
        }
        Ok(Layout { sites, links })
    }

    /// The configuration file of site `name` for `spec`, as
    /// [`SitesTopology::site_config`] writes it once this is built.
    pub fn site_config(&self, name: &str, spec: &OverlaySpec) -> Result<String> {
        self.layout()?.site_config(name, spec)
    }
}

impl Layout {
    fn site_config(&self, name: &str, spec: &OverlaySpec) -> Result<String> {
        let my = self
            .sites
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::Invalid(format!("unknown site {name:?}")))?;
        let me = &self.sites[my];
        let mut t = String::new();
        let w = |t: &mut String, s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        w(
            &mut t,
            format!("# generated by mongate-testbed for site {name}"),
        );
        w(&mut t, "[site]".into());
        w(&mut t, format!("name = {}", q(name)));
        w(&mut t, format!("vni = {}", spec.vni));
        w(&mut t, format!("lan_interface = {}", q(&me.lan_if)));
        w(
            &mut t,
            format!("lan_prefixes = [{}]", prefixes(me).join(", ")),
        );
        w(&mut t, String::new());
        w(&mut t, "[security]".into());
        match &spec.keys {
            None => w(&mut t, "mode = \"off\"".into()),
            Some(keys) => {
                let k = keys
                    .iter()
                    .find(|k| k.site == name)
                    .ok_or_else(|| Error::Invalid(format!("no key for site {name}")))?;
                let file = k.private_key_file.display().to_string();
                w(&mut t, format!("private_key_file = {}", q(&file)));
            }
        }
        let mut uplinks = 0;
        for l in &self.links {
            let Some((_, ifname, v4)) = l.ends.iter().find(|e| e.0 == my) else {
                continue;
            };
            let v4 = v4.ok_or_else(|| Error::Invalid(format!("link {}: no IPv4", l.name)))?;
            uplinks += 1;
            w(&mut t, String::new());
            w(&mut t, "[[uplinks]]".into());
            w(&mut t, format!("name = {}", q(&l.name)));
            w(&mut t, format!("interface = {}", q(ifname)));
            w(&mut t, format!("local_address = {}", q(&v4.to_string())));
            w(&mut t, format!("capacity_mbps = {:?}", l.rate_mbps));
            w(&mut t, "backend = \"af_xdp\"".into());
        }
        if uplinks == 0 {
            return Err(Error::Invalid(format!("site {name} has no WAN link")));
        }
        for (i, s) in self.sites.iter().enumerate() {
            if i == my {
                continue;
            }
            let gws: Vec<String> = self
                .links
                .iter()
                .filter_map(|l| l.ends.iter().find(|e| e.0 == i))
                .filter_map(|e| e.2.map(|v4| q(&v4.to_string())))
                .collect();
            if gws.is_empty() {
                continue;
            }
            w(&mut t, String::new());
            w(&mut t, "[[peers]]".into());
            w(&mut t, format!("name = {}", q(&s.name)));
            w(&mut t, format!("prefixes = [{}]", prefixes(s).join(", ")));
            w(&mut t, format!("gateways = [{}]", gws.join(", ")));
            if let Some(keys) = &spec.keys {
                let k = keys
                    .iter()
                    .find(|k| k.site == s.name)
                    .ok_or_else(|| Error::Invalid(format!("no key for site {}", s.name)))?;
                w(&mut t, format!("public_key = {}", q(&k.public_key)));
            }
        }
        for c in &spec.classes {
            w(&mut t, String::new());
            w(&mut t, "[[classes]]".into());
            w(&mut t, format!("id = {}", q(&c.id)));
            w(&mut t, format!("source = {}", q(&c.source)));
            w(&mut t, format!("destination = {}", q(&c.destination)));
            w(&mut t, format!("type = {}", q(&c.kind)));
            w(&mut t, format!("overflow = {}", q(&c.overflow)));
            for r in &c.rules {
                w(&mut t, "[[classes.rules]]".into());
                if let Some(p) = &r.protocol {
                    w(&mut t, format!("protocol = {}", q(p)));
                }
                if let Some(p) = &r.dst_ports {
                    w(&mut t, format!("dst_ports = {}", q(p)));
                }
            }
        }
        for f in &spec.flows {
            w(&mut t, String::new());
            w(&mut t, "[[flows]]".into());
            w(&mut t, format!("id = {}", q(&f.id)));
            w(&mut t, format!("class = {}", q(&f.class)));
            let r: Vec<String> = f.route.iter().map(|s| q(s)).collect();
            w(&mut t, format!("route = [{}]", r.join(", ")));
        }
        if let Some(p) = &spec.plan {
            w(&mut t, String::new());
            w(&mut t, "[plan]".into());
            w(&mut t, format!("epoch = {}", p.epoch));
            for (id, n) in &p.classes {
                w(&mut t, "[[plan.classes]]".into());
                w(&mut t, format!("id = {}", q(id)));
                w(&mut t, format!("sessions = {n}"));
            }
            for (id, r, wt) in &p.flows {
                w(&mut t, "[[plan.flows]]".into());
                w(&mut t, format!("id = {}", q(id)));
                w(&mut t, format!("rate_mbps = {r:?}"));
                w(&mut t, format!("weight = {wt:?}"));
            }
        }
        Ok(t)
    }
}

/// A site's LAN prefixes, quoted: IPv4, then IPv6 if it has one.
fn prefixes(s: &SiteLayout) -> Vec<String> {
    let mut p = vec![q(&format!("{}/{}", s.lan_prefix.addr, s.lan_prefix.len))];
    if let Some(v6) = s.lan_v6 {
        let n = v6.network();
        p.push(q(&format!("{}/{}", n.addr, n.len)));
    }
    p
}
