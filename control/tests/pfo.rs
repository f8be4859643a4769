//! PFO solver against the brute-force oracle, property tests, edge cases, the paper's triangle.

use mongate_control::mapping::{MappingConfig, montra_targets, path_prices};
use mongate_control::pfo::instance::{ClassSpec, FlowSpec, InstanceFile, LinkSpec};
use mongate_control::pfo::oracle::brute_force;
use mongate_control::pfo::utility::UtilitySpec;
use mongate_control::pfo::{Formulation, Instance, Solution, SolveOptions, Status, solve};
use proptest::prelude::*;

const EPS: f64 = 1e-6;

fn opts(formulation: Formulation) -> SolveOptions {
    SolveOptions {
        gap_tolerance: 1e-7,
        formulation,
        ..SolveOptions::default()
    }
}

fn link(id: &str, capacity: f64) -> LinkSpec {
    LinkSpec {
        id: id.into(),
        capacity,
    }
}
fn class(id: &str, sessions: u32, utility: UtilitySpec) -> ClassSpec {
    ClassSpec {
        id: id.into(),
        sessions,
        utility,
    }
}
fn flow(id: &str, class: &str, links: &[&str]) -> FlowSpec {
    FlowSpec {
        id: id.into(),
        class: class.into(),
        links: links.iter().map(|s| (*s).into()).collect(),
    }
}
fn pwl(pts: &[[f64; 2]]) -> UtilitySpec {
    UtilitySpec::PiecewiseLinear(pts.to_vec())
}

/// Feasibility, exact objective, bound >= objective, consistent loads, never "infeasible".
fn check_plan(inst: &Instance, plan: &Solution) {
    let mut loads = vec![0.0; inst.links.len()];
    let mut objective = 0.0;
    for (c, cl) in inst.classes.iter().enumerate() {
        let n = plan.classes[c].sessions;
        assert!(
            n <= cl.sessions,
            "class {} admits {n} > {}",
            cl.id,
            cl.sessions
        );
        let x: f64 = cl.flows.iter().map(|&f| plan.flows[f].rate).sum();
        assert!(
            (x - plan.classes[c].rate).abs() <= EPS * (1.0 + x),
            "class rate mismatch"
        );
        for &f in &cl.flows {
            assert!(plan.flows[f].rate >= 0.0);
            for &l in &inst.flows[f].links {
                loads[l] += f64::from(n) * plan.flows[f].rate;
            }
        }
        objective += f64::from(n) * cl.utility.eval(x);
    }
    for (l, ln) in inst.links.iter().enumerate() {
        assert!(
            loads[l] <= ln.capacity + EPS,
            "link {} load {} > {}",
            ln.id,
            loads[l],
            ln.capacity
        );
        assert!((loads[l] - plan.links[l].load).abs() <= EPS * (1.0 + loads[l]));
        assert!(plan.links[l].dual >= 0.0);
    }
    assert!(
        (objective - plan.objective).abs() <= EPS * (1.0 + objective.abs()),
        "{objective} vs {}",
        plan.objective
    );
    assert!(plan.bound >= plan.objective - 1e-12);
    let json = serde_json::to_string(plan).unwrap();
    assert!(!json.contains("infeasible"));
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn triangle(ac: UtilitySpec, bc: UtilitySpec, n_ac: u32, n_bc: u32) -> Instance {
    Instance::from_file(&InstanceFile {
        links: vec![link("A-B", 10.0), link("B-C", 5.0), link("A-C", 10.0)],
        classes: vec![class("A->C", n_ac, ac), class("B->C", n_bc, bc)],
        flows: vec![
            flow("A->C/direct", "A->C", &["A-C"]),
            flow("A->C/via-B", "A->C", &["A-B", "B-C"]),
            flow("B->C/direct", "B->C", &["B-C"]),
            flow("B->C/via-A", "B->C", &["A-B", "A-C"]),
        ],
        loss_budget: None,
    })
    .unwrap()
}

#[test]
fn paper_triangle_direct_10_via_b_5() {
    // A->C is worth twice B->C per Mbps: A->C takes both routes, B->C gets nothing.
    let inst = triangle(
        UtilitySpec::Linear { slope: 2.0 },
        UtilitySpec::Linear { slope: 1.0 },
        1,
        1,
    );
    for form in [
        Formulation::Incremental,
        Formulation::EnvelopePieces,
        Formulation::EnvelopeLog,
        Formulation::Plain,
    ] {
        let plan = solve(&inst, &opts(form));
        check_plan(&inst, &plan);
        assert_eq!(plan.status, Status::Optimal);
        assert!(
            close(plan.flows[0].rate, 10.0, 1e-6),
            "{form:?} direct {}",
            plan.flows[0].rate
        );
        assert!(
            close(plan.flows[1].rate, 5.0, 1e-6),
            "{form:?} via B {}",
            plan.flows[1].rate
        );
        assert!(close(plan.objective, 30.0, 1e-6));
        assert_eq!(plan.classes[1].sessions, 0);
        // Used flows: weight / rate is the path price, U'(X) = 2 on both, scaled to the loss
        // budget: both flows are the most expensive, so both lose q = 1 % at their targets.
        let q = mongate_control::pfo::instance::DEFAULT_LOSS_BUDGET;
        for f in 0..2 {
            assert!(
                close(
                    plan.flows[f].weight / plan.flows[f].rate,
                    q / (1.0 - q),
                    1e-6
                ),
                "{form:?} {plan:?}"
            );
        }
    }
}

#[test]
fn triangle_with_nonconcave_utilities_matches_oracle() {
    let sig = pwl(&[[0.0, 0.0], [2.0, 0.2], [4.0, 1.8], [6.0, 2.0]]);
    let conc = pwl(&[[0.0, 0.0], [1.0, 0.6], [3.0, 1.0]]);
    let inst = triangle(sig, conc, 3, 3);
    let oracle = brute_force(&inst, 10_000).unwrap();
    let plan = solve(&inst, &opts(Formulation::Incremental));
    check_plan(&inst, &plan);
    assert!(
        close(plan.objective, oracle.objective, 1e-6),
        "{} vs {}",
        plan.objective,
        oracle.objective
    );
}

#[test]
fn zero_capacity_admits_nothing_but_is_not_infeasible() {
    let inst = Instance::from_file(&InstanceFile {
        links: vec![link("L", 0.0)],
        classes: vec![class("c", 5, pwl(&[[0.0, 0.0], [1.0, 1.0]]))],
        flows: vec![flow("f", "c", &["L"])],
        loss_budget: None,
    })
    .unwrap();
    let plan = solve(&inst, &SolveOptions::default());
    check_plan(&inst, &plan);
    assert_eq!(plan.status, Status::Optimal);
    assert_eq!(plan.classes[0].sessions, 0);
    assert_eq!(plan.objective, 0.0);
    assert_eq!(plan.flows[0].weight, 0.0);
}

#[test]
fn one_link_step_utility_admits_what_fits() {
    // Each session needs 3 to be worth 1: capacity 10 fits 3 sessions.
    let inst = Instance::from_file(&InstanceFile {
        links: vec![link("L", 10.0)],
        classes: vec![class("c", 5, pwl(&[[0.0, 0.0], [2.9, 0.0], [3.0, 1.0]]))],
        flows: vec![flow("f", "c", &["L"])],
        loss_budget: None,
    })
    .unwrap();
    let plan = solve(&inst, &opts(Formulation::Incremental));
    check_plan(&inst, &plan);
    assert_eq!(plan.classes[0].sessions, 3);
    assert!(close(plan.objective, 3.0, 1e-7));
}

#[test]
fn parallel_routes_are_both_used() {
    let inst = Instance::from_file(&InstanceFile {
        links: vec![link("L1", 4.0), link("L2", 6.0)],
        classes: vec![class("c", 2, UtilitySpec::Linear { slope: 1.0 })],
        flows: vec![flow("f1", "c", &["L1"]), flow("f2", "c", &["L2"])],
        loss_budget: None,
    })
    .unwrap();
    let plan = solve(&inst, &opts(Formulation::Incremental));
    check_plan(&inst, &plan);
    assert!(close(plan.objective, 10.0, 1e-7));
    assert!(close(plan.links[0].load, 4.0, 1e-7) && close(plan.links[1].load, 6.0, 1e-7));
}

#[test]
fn flat_utility_gets_floor_weights_not_zero() {
    // Utility flat from 1 on: links not saturated, duals zero, weight would be 0.
    let inst = Instance::from_file(&InstanceFile {
        links: vec![link("L", 10.0)],
        classes: vec![class("c", 2, pwl(&[[0.0, 0.0], [1.0, 1.0], [5.0, 1.0]]))],
        flows: vec![flow("f", "c", &["L"])],
        loss_budget: None,
    })
    .unwrap();
    let plan = solve(&inst, &opts(Formulation::Incremental));
    check_plan(&inst, &plan);
    assert!(close(plan.objective, 2.0, 1e-7));
    let f = &plan.flows[0];
    assert!(f.rate >= 1.0 - 1e-7 && f.weight > 0.0, "{plan:?}");
}

#[test]
fn approximated_forms_report_a_valid_bound() {
    let inst = Instance::from_file(&InstanceFile {
        links: vec![link("L1", 5.0), link("L2", 3.0)],
        classes: vec![
            class(
                "log",
                3,
                UtilitySpec::Log {
                    weight: 1.0,
                    scale: 0.5,
                },
            ),
            class(
                "sig",
                2,
                UtilitySpec::Sigmoid {
                    weight: 2.0,
                    midpoint: 2.0,
                    steepness: 3.0,
                },
            ),
            class(
                "step",
                2,
                UtilitySpec::Step {
                    threshold: 1.5,
                    value: 1.0,
                },
            ),
        ],
        flows: vec![
            flow("a", "log", &["L1"]),
            flow("b", "sig", &["L1", "L2"]),
            flow("c", "step", &["L2"]),
        ],
        loss_budget: None,
    })
    .unwrap();
    let plan = solve(&inst, &SolveOptions::default());
    check_plan(&inst, &plan);
    assert!(plan.gap <= 1e-3, "{plan:?}");
}

#[test]
fn duals_satisfy_complementary_slackness_and_mapping_kkt() {
    let sig = pwl(&[[0.0, 0.0], [2.0, 0.2], [4.0, 1.8], [6.0, 2.0]]);
    let inst = triangle(
        sig,
        UtilitySpec::Log {
            weight: 1.0,
            scale: 1.0,
        },
        3,
        4,
    );
    let plan = solve(&inst, &SolveOptions::default());
    check_plan(&inst, &plan);
    for (l, ln) in inst.links.iter().enumerate() {
        if plan.links[l].dual > 1e-7 {
            assert!(
                close(plan.links[l].load, ln.capacity, 1e-6),
                "dual on unsaturated link {}",
                ln.id
            );
        }
    }
    let duals: Vec<f64> = plan.links.iter().map(|l| l.dual).collect();
    let rates: Vec<f64> = plan.flows.iter().map(|f| f.rate).collect();
    let prices = path_prices(&inst, &duals);
    let targets = montra_targets(&inst, &rates, &duals, &MappingConfig::default());
    // Weights are the KKT weights x̂ p scaled by one factor s, chosen so that the most
    // expensive flow's equilibrium loss is the budget: w / x̂ = s p, max over flows q/(1-q).
    let q = inst.loss_budget;
    let max_price = targets
        .iter()
        .zip(&prices)
        .filter(|(t, _)| t.controlled && !t.floored)
        .map(|(_, p)| *p)
        .fold(0.0, f64::max);
    assert!(max_price > 0.0);
    let s = (q / (1.0 - q)) / max_price;
    for (f, t) in targets.iter().enumerate() {
        if t.controlled && !t.floored {
            assert!(close(t.weight / rates[f], s * prices[f], 1e-9));
        }
        assert!(!t.controlled || t.rate_cap == rates[f]);
    }
}

#[test]
fn time_limit_returns_a_plan_and_a_bound() {
    let inst = triangle(
        pwl(&[[0.0, 0.0], [1.0, 0.0], [1.1, 1.0]]),
        pwl(&[[0.0, 0.0], [0.5, 0.1], [0.7, 1.0]]),
        40,
        40,
    );
    let plan = solve(
        &inst,
        &SolveOptions {
            time_limit: Some(5.0),
            ..SolveOptions::default()
        },
    );
    check_plan(&inst, &plan);
}

/// Random tiny instance: 2-3 links, 1-2 classes, 1-2 flows each, N <= 3, PWL with 1-3 pieces.
fn tiny_instance() -> impl Strategy<Value = InstanceFile> {
    let links = prop::collection::vec(0.0f64..8.0, 2..=3);
    let util = prop::collection::vec((0.2f64..3.0, 0.0f64..2.0), 1..=3).prop_map(|steps| {
        let mut pts = vec![[0.0, 0.0]];
        for (dr, du) in steps {
            let last = pts[pts.len() - 1];
            pts.push([last[0] + dr, last[1] + du]);
        }
        UtilitySpec::PiecewiseLinear(pts)
    });
    let cls = prop::collection::vec(
        (
            0u32..=3,
            util,
            prop::collection::vec(prop::collection::vec(0usize..3, 1..=2), 1..=2),
        ),
        1..=2,
    );
    (links, cls).prop_map(|(caps, cls)| {
        let nl = caps.len();
        let links: Vec<LinkSpec> = caps
            .iter()
            .enumerate()
            .map(|(i, &c)| link(&format!("l{i}"), c))
            .collect();
        let mut classes = Vec::new();
        let mut flows = Vec::new();
        for (c, (n, u, routes)) in cls.into_iter().enumerate() {
            let cid = format!("c{c}");
            for (r, ls) in routes.into_iter().enumerate() {
                let mut ids: Vec<String> = ls.into_iter().map(|l| format!("l{}", l % nl)).collect();
                ids.sort();
                ids.dedup();
                flows.push(FlowSpec {
                    id: format!("{cid}/{r}"),
                    class: cid.clone(),
                    links: ids,
                });
            }
            classes.push(class(&cid, n, u));
        }
        InstanceFile {
            links,
            classes,
            flows,
            loss_budget: None,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn solver_matches_brute_force(file in tiny_instance()) {
        let inst = Instance::from_file(&file).unwrap();
        let oracle = brute_force(&inst, 5_000).unwrap();
        for form in [Formulation::Incremental, Formulation::EnvelopePieces, Formulation::EnvelopeLog] {
            let plan = solve(&inst, &opts(form));
            check_plan(&inst, &plan);
            prop_assert_eq!(plan.status, Status::Optimal);
            prop_assert!(close(plan.objective, oracle.objective, 1e-6),
                "{:?}: solver {} oracle {} ({:?})", form, plan.objective, oracle.objective, oracle.sessions);
            prop_assert!(plan.bound >= oracle.objective - 1e-6 * (1.0 + oracle.objective));
        }
        // Without the dive's warm start (HiGHS alone) the answer is the same.
        let cold = solve(&inst, &SolveOptions { warm_start: false, ..opts(Formulation::Incremental) });
        check_plan(&inst, &cold);
        prop_assert!(close(cold.objective, oracle.objective, 1e-6),
            "cold start: solver {} oracle {}", cold.objective, oracle.objective);
    }
}
