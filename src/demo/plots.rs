//! The demo's plots: SVG files drawn from a run's [`Summary`] alone, so that
//! a newcomer sees the run (and a test can check the pictures against the
//! JSON summary they came from).
//!
//! - `rates.svg`: per flow, the rate delivered at the destination gateway
//!   (solid) and PFO's target (dashed, same colour) per second.
//! - `utility.svg`: the mission utility of each second's delivered rates
//!   against PFO's optimum (a dashed horizontal line).
//! - `failover.svg` (runs that cut links: `--fail-link`, `--scenario
//!   partition`): the flows' delivered rates with vertical markers at the cut
//!   (and rejoin), at the controls' path and link-state events and at the
//!   plans they activated, numbered and listed under the chart.
//!
//! The SVG backend of `plotters` writes text as `<text>` elements (no font
//! files, no font libraries: the layout uses plotters' size estimate). The
//! structure the tests read: every data series is one `<polyline>` with
//! `stroke-width="2"`, in drawing order (per flow: its target, then its
//! delivered rate); legend samples are `stroke-width="3"`; axes, ticks and
//! the grid are `stroke-width="1"`. A series is dashed by drawing it at
//! [`DASHED_ALPHA`] and adding `stroke-dasharray` to those polylines after
//! rendering: plotters' dashed series draw one `<line>` per dash, which no
//! reader can take back to the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Summary;

/// Canvas width, px.
const W: u32 = 1000;
/// Chart height, px (the failover plot's event list goes below).
const H: u32 = 520;
/// The legend panel on the right, px.
const LEGEND_W: u32 = 270;
/// Lines of the failover plot's event list.
const MAX_LIST: usize = 40;
/// The failover plot's time axis starts at most this many seconds before the traffic.
const EARLIEST_S: f64 = -10.0;
/// One line of a legend or of the event list, px.
const LINE_H: i32 = 16;
/// The opacity of dashed series (targets, optima, plan markers): dashed by
/// [`dash`] after rendering, and a little transparent so that a delivered
/// rate on its target stays visible.
const DASHED_ALPHA: f64 = 0.7;
/// What [`dash`] adds.
const DASHARRAY: &str = "8 5";
/// Flow colours (Tableau 10 without red and grey, which mark the cut and
/// the control's events); cycled beyond eight flows.
const FLOW_COLOURS: [(u8, u8, u8); 8] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];
const CUT: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Black: the flows' palette has green (a partition run drew its rejoin in B->C's colour).
const REJOIN: RGBColor = RGBColor(0, 0, 0);
const EVENT: RGBColor = RGBColor(0x60, 0x60, 0x60);
const PLAN: RGBColor = RGBColor(0x1f, 0x3f, 0xb4);
const FONT: &str = "sans-serif";
const X_DESC: &str = "time since the traffic started (s)";

fn flow_colour(k: usize) -> RGBColor {
    let (r, g, b) = FLOW_COLOURS[k % FLOW_COLOURS.len()];
    RGBColor(r, g, b)
}

/// How a line is drawn.
#[derive(Clone, Copy)]
enum Stroke {
    Solid,
    Dashed,
}

fn style(c: RGBColor, s: Stroke, width: u32) -> ShapeStyle {
    let alpha = match s {
        Stroke::Solid => 1.0,
        Stroke::Dashed => DASHED_ALPHA,
    };
    ShapeStyle {
        color: c.mix(alpha),
        filled: false,
        stroke_width: width,
    }
}

/// A plotters error as text (its error types are not `Send`).
fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// Adds `stroke-dasharray` to the polylines drawn at [`DASHED_ALPHA`].
fn dash(svg: &str) -> String {
    let mark = format!("<polyline fill=\"none\" opacity=\"{DASHED_ALPHA}\"");
    let with = format!(
        "<polyline fill=\"none\" stroke-dasharray=\"{DASHARRAY}\" opacity=\"{DASHED_ALPHA}\""
    );
    svg.replace(&mark, &with)
}

/// The last second of the series (at least 1).
/// The traffic's last second (the latest sample of the run's series).
pub(crate) fn t_max(s: &Summary) -> f64 {
    s.flow_series
        .iter()
        .map(|r| r.0)
        .chain(s.utility_series.iter().map(|r| r.0))
        .filter(|t| t.is_finite())
        .fold(1.0, f64::max)
}

/// An axis top: `max` with 10 % headroom, at least `floor`.
fn top(max: f64, floor: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        (max * 1.1).max(floor)
    } else {
        floor
    }
}

/// A finite value, else 0 (a summary never holds NaN; JSON cannot).
fn fin(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// A legend entry: colour, stroke, text.
type Entry = (RGBColor, Stroke, String);

/// Draws `title` (bold) and the entries one a line in `area`, from the top.
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    entries: &[Entry],
) -> anyhow::Result<()> {
    let left = Pos::new(HPos::Left, VPos::Center);
    let mut y = 40;
    area.draw(&Text::new(
        title.to_string(),
        (10, y),
        (FONT, 15)
            .into_font()
            .style(FontStyle::Bold)
            .color(&BLACK)
            .pos(left),
    ))
    .map_err(err)?;
    for (c, s, text) in entries {
        y += LINE_H + 4;
        area.draw(&PathElement::new(vec![(10, y), (44, y)], style(*c, *s, 3)))
            .map_err(err)?;
        area.draw(&Text::new(
            text.clone(),
            (52, y),
            (FONT, 14).into_font().color(&BLACK).pos(left),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Renders `rates.svg`: per flow, PFO's target (dashed) and the delivered
/// rate (solid) per second, Mbit/s of inner frames.
pub fn rates_svg(s: &Summary) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (chart_area, legend_area) = root.split_horizontally(W - LEGEND_W);
        let ymax = s
            .flow_series
            .iter()
            .flat_map(|r| r.1.iter().flat_map(|&(t, d)| [fin(t), fin(d)]))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(
                "Per-flow rate: delivered (solid) and PFO's target (dashed)",
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max(s), 0.0..top(ymax, 1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_desc("rate (Mbit/s of inner frames)")
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(err)?;
        for (k, _) in s.flows.iter().enumerate() {
            let c = flow_colour(k);
            let series = |pick: fn(&(f64, f64)) -> f64| {
                s.flow_series
                    .iter()
                    .map(move |(t, row)| (*t, fin(row.get(k).map_or(0.0, pick))))
            };
            chart
                .draw_series(LineSeries::new(
                    series(|x| x.0),
                    style(c, Stroke::Dashed, 2),
                ))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(series(|x| x.1), style(c, Stroke::Solid, 2)))
                .map_err(err)?;
        }
        let mut entries: Vec<Entry> = s
            .flows
            .iter()
            .enumerate()
            .map(|(k, f)| (flow_colour(k), Stroke::Solid, f.id.clone()))
            .collect();
        entries.push((EVENT, Stroke::Dashed, "PFO's target (flow's colour)".into()));
        legend(&legend_area, "flows (delivered)", &entries)?;
        root.present().map_err(err)?;
    }
    Ok(dash(&buf))
}

/// Renders `utility.svg`: the mission utility of each second against PFO's
/// optimum (and, when they differ, the optimum with the wire's true
/// capacities, `--scenario imprecise`, or without the link `--fail-link`
/// cut, and the optimum for the demand
/// before the crowd, `--scenario flash-crowd`).
pub fn utility_svg(s: &Summary) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (chart_area, legend_area) = root.split_horizontally(W - LEGEND_W);
        let mut lines: Vec<(f64, RGBColor, String)> = vec![(
            s.utility.optimum,
            RGBColor(0, 0, 0),
            format!("PFO's optimum {:.2}", s.utility.optimum),
        )];
        let differs = |a: f64, b: f64| (a - b).abs() > 1e-6 * a.abs().max(1.0);
        if differs(s.utility.true_optimum, s.utility.optimum) {
            lines.push((
                s.utility.true_optimum,
                CUT,
                format!(
                    "optimum, {} {:.2}",
                    if s.utility.reference.is_empty() {
                        "true capacities"
                    } else {
                        &s.utility.reference
                    },
                    s.utility.true_optimum
                ),
            ));
        }
        if let Some((before, _)) = s.crowd_optimum
            && differs(before, s.utility.optimum)
        {
            lines.push((
                before,
                PLAN,
                format!("optimum before the crowd {before:.2}"),
            ));
        }
        let ymax = s
            .utility_series
            .iter()
            .map(|r| fin(r.1))
            .chain(lines.iter().map(|l| fin(l.0)))
            .fold(0.0, f64::max);
        let xmax = t_max(s);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption("Mission utility per second vs PFO's optimum", (FONT, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..top(ymax, 1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_desc("mission utility (sum over classes of n U(rate))")
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                s.utility_series.iter().map(|&(t, u)| (t, fin(u))),
                style(flow_colour(0), Stroke::Solid, 2),
            ))
            .map_err(err)?;
        for (v, c, _) in &lines {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, fin(*v)), (xmax, fin(*v))],
                    style(*c, Stroke::Dashed, 2),
                ))
                .map_err(err)?;
        }
        let mut entries: Vec<Entry> = vec![(
            flow_colour(0),
            Stroke::Solid,
            format!(
                "delivered (mean over {:.0}-{:.0} s: {:.2})",
                s.window_s.0, s.window_s.1, s.utility.achieved
            ),
        )];
        entries.extend(lines.into_iter().map(|(_, c, t)| (c, Stroke::Dashed, t)));
        legend(&legend_area, "mission utility", &entries)?;
        root.present().map_err(err)?;
    }
    Ok(dash(&buf))
}

/// A marker of the failover plot.
struct Marker {
    t: f64,
    colour: RGBColor,
    stroke: Stroke,
    /// The list's text.
    text: String,
}

/// The cuts (and rejoins) of the run: (t, colour, what).
fn cuts(s: &Summary) -> Vec<(f64, RGBColor, String)> {
    let mut out = Vec::new();
    if let Some((l, t)) = &s.failed_link {
        out.push((f64::from(*t), CUT, format!("link {l} cut at {t} s")));
    }
    if let Some((site, cut, rejoin)) = &s.partition {
        out.push((
            f64::from(*cut),
            CUT,
            format!("site {site} cut off at {cut} s"),
        ));
        out.push((
            f64::from(*rejoin),
            REJOIN,
            format!("site {site} rejoins at {rejoin} s"),
        ));
    }
    out
}

/// Renders `failover.svg` when the run cut a link or a site (`None`
/// otherwise): the flows' delivered rates with a vertical line at each cut
/// and rejoin (labelled), and at each of the controls' path and link-state
/// events (grey) and activated plans (blue, dashed). Events less than 1 %
/// of the time axis apart share one number; the list under the chart gives
/// each event's time, site and message (events more than 10 s before the
/// traffic or after its last second, and beyond 40 lines, are counted, not
/// listed).
pub fn failover_svg(s: &Summary) -> Option<anyhow::Result<String>> {
    let cuts = cuts(s);
    if cuts.is_empty() {
        return None;
    }
    Some(draw_failover(s, &cuts))
}

fn draw_failover(s: &Summary, cuts: &[(f64, RGBColor, String)]) -> anyhow::Result<String> {
    let xmax = t_max(s);
    let mut markers: Vec<Marker> = s
        .path_events
        .iter()
        .map(|e| Marker {
            t: e.t_s,
            colour: EVENT,
            stroke: Stroke::Solid,
            text: format!("{} {}: {}", e.site, e.event, e.message),
        })
        .chain(s.plans.iter().map(|p| Marker {
            t: p.t_s,
            colour: PLAN,
            stroke: Stroke::Dashed,
            text: format!(
                "{} plan ({}): sessions {}",
                p.site,
                p.triggers.join(", "),
                p.sessions
                    .iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }))
        .filter(|m| m.t.is_finite())
        .collect();
    markers.sort_by(|a, b| a.t.total_cmp(&b.t));
    // The axis starts before the traffic at the controls' first decisions (plans and paths
    // come before the first packet), up to EARLIEST_S before it.
    let first = markers.first().map_or(0.0, |m| m.t).min(0.0);
    let xmin = (first - 0.5).floor().max(EARLIEST_S);
    let outside = markers.iter().filter(|m| m.t < xmin || m.t > xmax).count();
    markers.retain(|m| m.t >= xmin && m.t <= xmax);
    // Number the groups of close events.
    let gap = 0.01 * (xmax - xmin);
    let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
    for (i, m) in markers.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if m.t - markers[g.1[0]].t <= gap => g.1.push(i),
            _ => groups.push((m.t, vec![i])),
        }
    }
    let mut list: Vec<String> = Vec::new();
    for (n, (_, idx)) in groups.iter().enumerate() {
        for &i in idx {
            list.push(format!(
                "{:>2}  {:7.3} s  {}",
                n + 1,
                markers[i].t,
                markers[i].text
            ));
        }
    }
    let shown = list.len().min(MAX_LIST);
    let more = list.len() - shown + outside;
    let list_lines = shown + 2 + usize::from(more > 0);
    let list_h = u32::try_from(list_lines).unwrap_or(0) * LINE_H as u32 + 10;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H + list_h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top_area, list_area) = root.split_vertically(H);
        let (chart_area, legend_area) = top_area.split_horizontally(W - LEGEND_W);
        let ymax = s
            .flow_series
            .iter()
            .flat_map(|r| r.1.iter().map(|&(_, d)| fin(d)))
            .fold(0.0, f64::max);
        // Room above the data for the markers' numbers.
        let ytop = top(ymax, 1.0) * 1.1;
        let mut chart = ChartBuilder::on(&chart_area)
            .caption("Failover: delivered rates around the cut", (FONT, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(xmin..xmax, 0.0..ytop)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_desc("delivered rate (Mbit/s of inner frames)")
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(err)?;
        for (k, _) in s.flows.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    s.flow_series
                        .iter()
                        .map(|(t, row)| (*t, fin(row.get(k).map_or(0.0, |x| x.1)))),
                    style(flow_colour(k), Stroke::Solid, 2),
                ))
                .map_err(err)?;
        }
        // Labels start a little right of their line.
        let nudge = 0.004 * (xmax - xmin);
        let label = |t: f64, text: String, c: RGBColor, row: f64| {
            Text::new(
                text,
                (t + nudge, ytop * (1.0 - 0.035 * row)),
                (FONT, 13)
                    .into_font()
                    .color(&c)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        };
        for m in &markers {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.t, 0.0), (m.t, ytop * 0.93)],
                    style(m.colour, m.stroke, 1),
                )))
                .map_err(err)?;
        }
        for (n, (t, _)) in groups.iter().enumerate() {
            // Alternate two rows so that neighbouring numbers do not overlap.
            let row = if n % 2 == 0 { 1.0 } else { 2.0 };
            chart
                .draw_series(std::iter::once(label(*t, format!("{}", n + 1), EVENT, row)))
                .map_err(err)?;
        }
        for (i, (t, c, text)) in cuts.iter().enumerate() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*t, 0.0), (*t, ytop)],
                    style(*c, Stroke::Solid, 3),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(label(*t, text.clone(), *c, 4.0 + i as f64)))
                .map_err(err)?;
        }
        let mut entries: Vec<Entry> = s
            .flows
            .iter()
            .enumerate()
            .map(|(k, f)| (flow_colour(k), Stroke::Solid, f.id.clone()))
            .collect();
        entries.push((CUT, Stroke::Solid, "cut".into()));
        if s.partition.is_some() {
            entries.push((REJOIN, Stroke::Solid, "rejoin".into()));
        }
        entries.push((EVENT, Stroke::Solid, "path / link state (numbered)".into()));
        entries.push((PLAN, Stroke::Dashed, "plan activated (numbered)".into()));
        legend(&legend_area, "flows (delivered)", &entries)?;
        let left = Pos::new(HPos::Left, VPos::Center);
        let mut y = LINE_H;
        list_area
            .draw(&Text::new(
                "The controls' events (number on the chart, seconds since the traffic started, site, what):",
                (20, y),
                (FONT, 14).into_font().style(FontStyle::Bold).color(&BLACK).pos(left),
            ))
            .map_err(err)?;
        for line in list.iter().take(shown) {
            y += LINE_H;
            list_area
                .draw(&Text::new(
                    line.clone(),
                    (20, y),
                    ("monospace", 13).into_font().color(&BLACK).pos(left),
                ))
                .map_err(err)?;
        }
        if more > 0 {
            y += LINE_H;
            list_area
                .draw(&Text::new(
                    format!(
                        "... and {more} more (outside the time axis or beyond {MAX_LIST} lines): the JSON summary's path_events and plans"
                    ),
                    (20, y),
                    (FONT, 13).into_font().color(&BLACK).pos(left),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(dash(&buf))
}

/// Writes the plots of `s` into `dir` (created if missing) as
/// `PREFIX{rates,utility,failover}.svg`: their paths by name (`rates`,
/// `utility`, `failover`).
pub fn write(s: &Summary, dir: &Path, prefix: &str) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("plots: cannot create {}: {e}", dir.display()))?;
    let mut out = BTreeMap::new();
    let mut put = |name: &str, svg: String| -> anyhow::Result<()> {
        let path = dir.join(format!("{prefix}{name}.svg"));
        std::fs::write(&path, svg)
            .map_err(|e| anyhow::anyhow!("plots: cannot write {}: {e}", path.display()))?;
        out.insert(name.to_string(), path);
        Ok(())
    };
    put("rates", rates_svg(s)?)?;
    put("utility", utility_svg(s)?)?;
    if let Some(f) = failover_svg(s) {
        put("failover", f?)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{FlowSummary, PathEvent, PlanRecord, PlanSource, UtilitySummary, Verdict};

    fn flow(id: &str) -> FlowSummary {
        FlowSummary {
            id: id.into(),
            class: id.split('/').next().unwrap_or(id).into(),
            route: Vec::new(),
            target_mbps: 0.0,
            controller_mbps: 0.0,
            achieved_mbps: 0.0,
            error: 0.0,
            loss: 0.0,
            at_cap_share: 0.0,
            floored: false,
            loss_whole_run: 0.0,
            queue_drops: 0,
        }
    }

    /// Ten seconds of three flows: A->C/direct planned 9 and delivering 0 then 8.9, A->C/via-B
    /// planned 4.5 and delivering 4.4, B->C/direct nothing; utility 25 against 27.
    fn synthetic() -> Summary {
        let flow_series = (1..=10)
            .map(|i| {
                let t = f64::from(i);
                (
                    t,
                    vec![(9.0, if i < 2 { 0.0 } else { 8.9 }), (4.5, 4.4), (0.0, 0.0)],
                )
            })
            .collect();
        Summary {
            topology: "synthetic".into(),
            plan_source: PlanSource::Control,
            encrypted: true,
            plan_epochs: BTreeMap::new(),
            pfo: None,
            payload_efficiency: 0.92,
            loss_budget: 0.02,
            seconds: 10,
            convergence_s: Some(3.0),
            worst_error: 0.01,
            window_s: (3.0, 10.0),
            control_outage: None,
            flows: vec![flow("A->C/direct"), flow("A->C/via-B"), flow("B->C/direct")],
            classes: Vec::new(),
            utility: UtilitySummary {
                achieved: 25.0,
                optimum: 27.0,
                bound: 27.0,
                ratio: 25.0 / 27.0,
                true_optimum: 27.0,
                true_ratio: 25.0 / 27.0,
                reference: String::new(),
            },
            utility_series: (1..=10).map(|i| (f64::from(i), 25.0)).collect(),
            flow_series,
            wire_mbps: Vec::new(),
            queue_ms: 100,
            verdict: Verdict {
                ok: true,
                line: String::new(),
            },
            failed_link: None,
            failover_ms: None,
            failover_left_ms: None,
            path_events: vec![PathEvent {
                site: "A".into(),
                t_s: 6.05,
                event: "path".into(),
                message: "traffic to C on ab via B".into(),
            }],
            plans: vec![PlanRecord {
                site: "A".into(),
                t_s: 6.4,
                triggers: vec!["link_failed".into()],
                sessions: BTreeMap::from([("A->C".into(), 2)]),
            }],
            crowd_optimum: None,
            udp_sent: 0,
            udp_received: 0,
            workers: Vec::new(),
            partition: None,
            plots: BTreeMap::new(),
        }
    }

    /// The printed summary lists the control events up to the traffic's last second and counts
    /// the teardown's after it (a `link failed` at 12 s of a 10 s run).
    #[test]
    fn events_after_the_traffic_are_counted_not_listed() {
        let mut s = synthetic();
        s.path_events.push(PathEvent {
            site: "B".into(),
            t_s: 12.5,
            event: "link_state".into(),
            message: "link A-B: failed".into(),
        });
        let (during, after) = crate::demo::events_during_traffic(&s);
        assert_eq!(during.len(), 1);
        assert_eq!(during[0].t_s, 6.05);
        assert_eq!(after, 1);
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    /// A data series: dashed, stroke colour, points (px).
    type Line = (bool, String, Vec<(f64, f64)>);

    /// The data polylines (`stroke-width="2"`) in document order.
    fn series(doc: &roxmltree::Document<'_>) -> Vec<Line> {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
            .map(|n| {
                let pts = n
                    .attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect();
                (
                    n.attribute("stroke-dasharray").is_some(),
                    n.attribute("stroke").unwrap_or("").to_string(),
                    pts,
                )
            })
            .collect()
    }

    #[test]
    fn rates_plot_has_a_target_and_a_delivered_line_per_flow_and_a_legend_of_flow_ids() {
        let s = synthetic();
        let svg = rates_svg(&s).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let t = texts(&doc);
        for f in &s.flows {
            assert!(t.contains(&f.id), "legend lacks {}: {t:?}", f.id);
        }
        assert!(t.iter().any(|x| x == X_DESC), "{t:?}");
        assert!(
            t.iter().any(|x| x == "rate (Mbit/s of inner frames)"),
            "{t:?}"
        );
        assert!(t.iter().any(|x| x.starts_with("Per-flow rate")), "{t:?}");
        let lines = series(&doc);
        assert_eq!(lines.len(), 2 * s.flows.len(), "{svg}");
        for (k, pair) in lines.chunks(2).enumerate() {
            let (target, delivered) = (&pair[0], &pair[1]);
            assert!(
                target.0 && !delivered.0,
                "flow {k}: target dashed, delivered solid"
            );
            assert_eq!(target.1, delivered.1, "flow {k}: one colour");
            assert_eq!(target.2.len(), 10);
            assert_eq!(delivered.2.len(), 10);
        }
        // Distinct colours; the y pixels follow the values: delivered 8.9 lies under target 9
        // of flow 0, above 4.5, and the zero flow on the axis, below everything.
        assert_ne!(lines[0].1, lines[2].1);
        let y = |i: usize, p: usize| lines[i].2[p].1;
        assert!(y(1, 5) > y(0, 5) && y(1, 5) < y(2, 5), "{svg}");
        assert!(
            y(1, 0) > y(3, 0),
            "0 delivered in the first second lies below 4.4"
        );
        assert!(y(4, 3) > y(3, 3) && y(4, 3) == y(5, 3));
        // The dashes are on exactly the targets and the legend's target sample.
        assert_eq!(svg.matches("stroke-dasharray").count(), s.flows.len() + 1);
        // No cut: no failover plot.
        assert!(failover_svg(&s).is_none());
    }

    #[test]
    fn utility_plot_shows_the_series_and_the_optimum() {
        let mut s = synthetic();
        let svg = utility_svg(&s).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let t = texts(&doc);
        assert!(t.iter().any(|x| x == "PFO's optimum 27.00"), "{t:?}");
        assert!(
            t.iter().any(|x| x.starts_with("mission utility (")),
            "{t:?}"
        );
        let lines = series(&doc);
        assert_eq!(lines.len(), 2, "{svg}");
        assert!(!lines[0].0 && lines[0].2.len() == 10);
        // The optimum: dashed, horizontal, above the utility of 25.
        assert!(lines[1].0 && lines[1].2.len() == 2);
        assert_eq!(lines[1].2[0].1, lines[1].2[1].1);
        assert!(lines[1].2[0].1 < lines[0].2[0].1);
        // A wrong instance adds the optimum with the true capacities.
        s.utility.true_optimum = 22.0;
        let svg = utility_svg(&s).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(series(&doc).len(), 3);
        assert!(
            texts(&doc)
                .iter()
                .any(|x| x == "optimum, true capacities 22.00")
        );
    }

    #[test]
    fn failover_plot_marks_the_cut_and_lists_the_events() {
        let mut s = synthetic();
        s.failed_link = Some(("A-C".into(), 6));
        let svg = failover_svg(&s).expect("a cut").unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let t = texts(&doc);
        assert!(t.iter().any(|x| x == "link A-C cut at 6 s"), "{t:?}");
        for f in &s.flows {
            assert!(t.contains(&f.id), "{t:?}");
        }
        // Both events listed under the chart: 0.35 s apart on a 12 s axis (more than 1 %), so
        // numbered 1 and 2.
        assert!(
            t.iter()
                .any(|x| x.starts_with("1") && x.ends_with("A path: traffic to C on ab via B")),
            "{t:?}"
        );
        assert!(
            t.iter().any(|x| x.starts_with("2") && x.ends_with("A plan (link_failed): sessions A->C 2")),
            "{t:?}"
        );
        // One delivered line per flow; the cut (red, 3 px) spans the chart.
        assert_eq!(series(&doc).len(), s.flows.len());
        let red = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("polyline")
                    && n.attribute("stroke") == Some("#D62728")
                    && n.attribute("stroke-width") == Some("3")
            })
            .count();
        assert_eq!(red, 2, "the cut's line and its legend sample");
        // A partition marks the cut and the rejoin.
        s.failed_link = None;
        s.partition = Some(("A".into(), 3, 7));
        let svg = failover_svg(&s).expect("a partition").unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let t = texts(&doc);
        assert!(t.iter().any(|x| x == "site A cut off at 3 s"), "{t:?}");
        assert!(t.iter().any(|x| x == "site A rejoins at 7 s"), "{t:?}");
    }

    #[test]
    fn plots_are_written_with_the_prefix() {
        let dir = std::env::temp_dir().join(format!("mongate-plots-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = synthetic();
        s.failed_link = Some(("A-C".into(), 6));
        let files = write(&s, &dir, "replan_off-").unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["failover", "rates", "utility"]
        );
        for (name, path) in &files {
            assert_eq!(*path, dir.join(format!("replan_off-{name}.svg")));
            let text = std::fs::read_to_string(path).unwrap();
            roxmltree::Document::parse(&text).unwrap();
        }
        // A file where the directory should be: a clear error.
        let blocked = dir.join("replan_off-rates.svg").join("sub");
        let e = write(&s, &blocked, "").unwrap_err().to_string();
        assert!(e.contains("cannot create"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
