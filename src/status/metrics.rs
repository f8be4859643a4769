//! The status report in the Prometheus text format (version 0.0.4), for
//! `mongate metrics`. Pure: a [`Report`] in, the exposition out. The figures
//! are the report's (the same as `mongate status --json`): rates are
//! averages over the exporter's sampling interval; the counters (`_total`)
//! are the dataplane's since its start. Names: docs/status.md.

use std::fmt::Write as _;

use super::view::Report;

/// A label value escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition builder: series collected per family, in the order the
/// families first appear (the format wants each family's lines together).
struct Out {
    families: Vec<(&'static str, &'static str, &'static str, Vec<String>)>,
}

impl Out {
    fn put(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        if !v.is_finite() {
            return;
        }
        let l: Vec<String> = labels
            .iter()
            .map(|(k, x)| format!("{k}=\"{}\"", esc(x)))
            .collect();
        let line = format!("{name}{{{}}} {v}", l.join(","));
        match self.families.iter_mut().find(|f| f.0 == name) {
            Some(f) => f.3.push(line),
            None => self.families.push((name, kind, help, vec![line])),
        }
    }

    fn finish(self) -> String {
        let mut s = String::new();
        for (name, kind, help, lines) in self.families {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s
    }
}

/// Renders `r`. Families are grouped by metric (the format wants every
/// series of a family together).
pub fn render(r: &Report) -> String {
    let mut o = Out {
        families: Vec::new(),
    };
    const G: &str = "gauge";
    const C: &str = "counter";
    o.put(
        "mongate_status_interval_seconds",
        G,
        "Seconds between the two readings the rates come from.",
        &[],
        r.interval_s,
    );
    for g in &r.gateways {
        let gw = g.name.as_str();
        {
            o.put(
                "mongate_gateway_running",
                G,
                "1 if the gateway's process is alive.",
                &[("gateway", gw), ("kind", g.kind)],
                if g.process == "running" { 1.0 } else { 0.0 },
            );
            if let Some(p) = &g.plan {
                o.put(
                    "mongate_plan_epoch",
                    G,
                    "Epoch of the plan in force.",
                    &[("gateway", gw)],
                    p.epoch as f64,
                );
                o.put(
                    "mongate_plan_age_seconds",
                    G,
                    "Seconds the plan in force has been in force.",
                    &[("gateway", gw)],
                    p.age_s,
                );
            }
            if let Some(c) = &g.control {
                o.put(
                    "mongate_control_attached",
                    G,
                    "1 if a control process heartbeat is less than a second old.",
                    &[("gateway", gw)],
                    f64::from(u8::from(c.attached)),
                );
            }
            if let Some(s) = g.sessions {
                o.put(
                    "mongate_sessions",
                    G,
                    "Sessions in the classifier's table.",
                    &[("gateway", gw)],
                    s as f64,
                );
            }
            if let Some(h) = g.lan_hosts {
                o.put(
                    "mongate_lan_hosts",
                    G,
                    "LAN hosts in the learned neighbour table.",
                    &[("gateway", gw)],
                    h as f64,
                );
            }
            if let Some(n) = g.lan_hosts_not_learned {
                o.put(
                    "mongate_lan_hosts_not_learned",
                    C,
                    "LAN hosts not learned for want of room in the neighbour table (delivered to the LAN next hop).",
                    &[("gateway", gw)],
                    n as f64,
                );
            }
            if let Some(x) = &g.optimizer {
                let l = [("gateway", gw)];
                o.put(
                    "mongate_optimizer_epoch",
                    G,
                    "Epoch of the optimizer's last plan.",
                    &l,
                    x.epoch as f64,
                );
                o.put(
                    "mongate_optimizer_objective",
                    G,
                    "Mission utility of the optimizer's last plan (PFO's objective).",
                    &l,
                    x.objective,
                );
                o.put(
                    "mongate_optimizer_bound",
                    G,
                    "Proven bound of the optimizer's last solve.",
                    &l,
                    x.bound,
                );
                o.put(
                    "mongate_optimizer_gap",
                    G,
                    "Relative gap of the optimizer's last solve.",
                    &l,
                    x.gap,
                );
                o.put(
                    "mongate_optimizer_solve_seconds",
                    G,
                    "Wall time of the optimizer's last solve.",
                    &l,
                    x.solve_ms / 1e3,
                );
                for d in &x.detours {
                    o.put(
                        "mongate_detour_spare_mbps",
                        G,
                        "What the optimizer's last plan leaves on the one-waypoint detour to peer through via (its fuller link), Mbit/s: a failover's room there until the next plan.",
                        &[("gateway", gw), ("peer", &d.peer), ("via", &d.via)],
                        d.mbps,
                    );
                }
            }
        }
        {
            for p in &g.peers {
                for x in &p.paths {
                    let id = x.id.to_string();
                    let via = x.via.as_deref().unwrap_or("");
                    let l = [
                        ("gateway", gw),
                        ("peer", p.name.as_str()),
                        ("path", id.as_str()),
                        ("uplink", x.uplink.as_str()),
                        ("via", via),
                        ("remote", x.remote.as_str()),
                    ];
                    for st in ["up", "suspect", "down", "held"] {
                        let mut ls = l.to_vec();
                        ls.push(("state", st));
                        o.put(
                            "mongate_path_state",
                            G,
                            "1 for the path's state (up, suspect, down, held), 0 for the others.",
                            &ls,
                            f64::from(u8::from(x.state == st)),
                        );
                    }
                    o.put(
                        "mongate_path_active",
                        G,
                        "1 if the peer's traffic rides the path now.",
                        &l,
                        f64::from(u8::from(x.active)),
                    );
                    if let Some(v) = x.rtt_ms {
                        o.put(
                            "mongate_path_rtt_seconds",
                            G,
                            "Smoothed probe round-trip time.",
                            &l,
                            v / 1e3,
                        );
                    }
                    if let Some(v) = x.loss {
                        o.put(
                            "mongate_path_probe_loss_ratio",
                            G,
                            "Probes unanswered over the interval.",
                            &l,
                            v,
                        );
                    }
                    if let Some(v) = x.last_probe_age_s {
                        o.put(
                            "mongate_path_last_probe_age_seconds",
                            G,
                            "Seconds since the last probe on the path.",
                            &l,
                            v,
                        );
                    }
                    o.put(
                        "mongate_path_downs_total",
                        C,
                        "Times the path went down.",
                        &l,
                        x.downs as f64,
                    );
                }
            }
        }
        {
            for c in g.classes.iter().filter(|c| c.local) {
                let l = [("gateway", gw), ("class", c.id.as_str())];
                for (kind, v) in [
                    ("planned", c.planned_sessions),
                    ("admitted", c.admitted_sessions),
                    ("demanded", c.demanded_sessions),
                ] {
                    o.put(
                        "mongate_class_sessions",
                        G,
                        "Sessions of a class: planned (the plan's room), admitted (live), demanded (admitted + refused for lack of room).",
                        &[l[0], l[1], ("kind", kind)],
                        v as f64,
                    );
                }
                o.put(
                    "mongate_class_rate_mbps",
                    G,
                    "Sent rate of the class's flows starting here, Mbit/s of inner frames.",
                    &l,
                    c.rate_mbps,
                );
                if let Some(u) = c.planned_utility {
                    o.put(
                        "mongate_class_planned_utility",
                        G,
                        "The class's utility in the optimizer's last plan.",
                        &l,
                        u,
                    );
                }
                if let Some(u) = c.utility {
                    o.put(
                        "mongate_class_utility",
                        G,
                        "The class's utility now: its admitted sessions at the sent rate of its flows.",
                        &l,
                        u,
                    );
                }
            }
        }
        {
            for f in &g.flows {
                let l = [("gateway", gw), ("flow", f.id.as_str()), ("role", f.role)];
                for (name, help, v) in [
                    (
                        "mongate_flow_target_mbps",
                        "The plan's rate for the flow (origin), Mbit/s.",
                        f.target_mbps,
                    ),
                    (
                        "mongate_flow_controller_mbps",
                        "The MONtra controller's rate (origin), Mbit/s.",
                        f.controller_mbps,
                    ),
                    (
                        "mongate_flow_sent_mbps",
                        "Sent onto the WAN over the interval, Mbit/s of inner frames.",
                        f.sent_mbps,
                    ),
                    (
                        "mongate_flow_delivered_mbps",
                        "Delivered to the LAN over the interval, Mbit/s of inner frames.",
                        f.delivered_mbps,
                    ),
                    (
                        "mongate_flow_relayed_mbps",
                        "Relayed as a waypoint over the interval, Mbit/s of inner frames.",
                        f.relayed_mbps,
                    ),
                ] {
                    o.put(name, G, help, &l, v);
                }
                if let Some(v) = f.loss {
                    o.put(
                        "mongate_flow_loss_ratio",
                        G,
                        "Packets the acks reported lost / (acked + lost) over the interval (origin).",
                        &l,
                        v,
                    );
                }
            }
        }
        {
            for i in &g.interfaces {
                let w = i.worker.to_string();
                let l = [
                    ("gateway", gw),
                    ("worker", w.as_str()),
                    ("interface", i.name.as_str()),
                ];
                for (name, help, v) in [
                    (
                        "mongate_interface_rx_packets_total",
                        "Packets received.",
                        i.rx_packets,
                    ),
                    (
                        "mongate_interface_tx_packets_total",
                        "Packets sent.",
                        i.tx_packets,
                    ),
                    (
                        "mongate_interface_rx_bytes_total",
                        "Bytes received (whole frames).",
                        i.rx_bytes,
                    ),
                    (
                        "mongate_interface_tx_bytes_total",
                        "Bytes sent (whole frames).",
                        i.tx_bytes,
                    ),
                    (
                        "mongate_interface_kernel_rx_dropped_total",
                        "The kernel's receive drops before the dataplane's rings.",
                        i.kernel_rx_dropped,
                    ),
                ] {
                    o.put(name, C, help, &l, v as f64);
                }
                o.put(
                    "mongate_interface_rx_mbps",
                    G,
                    "Received over the interval, Mbit/s of whole frames.",
                    &l,
                    i.rx_mbps,
                );
                o.put(
                    "mongate_interface_tx_mbps",
                    G,
                    "Sent over the interval, Mbit/s of whole frames.",
                    &l,
                    i.tx_mbps,
                );
            }
            for (reason, d) in &g.drops {
                o.put(
                    "mongate_drops_total",
                    C,
                    "Packets dropped, by reason (docs/overlay.md).",
                    &[("gateway", gw), ("reason", reason.as_str())],
                    d.total as f64,
                );
            }
        }
    }
    for f in &r.flows {
        let l = [
            ("flow", f.id.as_str()),
            ("origin", f.origin.as_deref().unwrap_or("")),
            ("destination", f.destination.as_deref().unwrap_or("")),
        ];
        o.put(
            "mongate_overlay_flow_delivered_mbps",
            G,
            "Per overlay flow: delivered at its destination's gateway over the interval, Mbit/s.",
            &l,
            f.delivered_mbps,
        );
    }
    o.finish()
}
