//! PFO -> MONtra mapping (the paper's Theorem 1) with our answers to the cases it leaves open.
//!
//! For a flow `f` with target per-session rate `x̂_f` and path price `p_f = sum_{l in L(f)} mu_l`
//! (capacity duals of the LP with the session counts fixed), MONtra's transport utility is
//! `w_f log x` with `w_f = x̂_f p_f`: then `w_f / x̂_f = p_f`, the KKT condition of MONtra at
//! `x̂`. Edge cases (documented in `docs/pfo.md`):
//! - `x̂_f = 0`: the flow gets no controller (`controlled = false`, weight 0, cap 0).
//! - `x̂_f > 0` but `p_f = 0` (no saturated link on the path, or a flat utility there): the
//!   weight would be 0. We give a floor weight `x̂_f * floor_price` with `floor_price` =
//!   `floor_fraction` (default 1) x the *smallest* positive path price of the used flows (1 if
//!   none), and rely on the rate cap `x̂_f` to stop it. Then a floored flow ramps as fast as the
//!   plan's cheapest priced flow and, if its path congests after all, yields at least as much
//!   as any priced flow. (The former default, 1e-3 x the largest price, made floored flows ramp
//!   1000x slower than the heaviest flow: 3.7 % of target after 600 s on AttMpls.)
//! - Breakpoints of a piecewise-linear utility: the duals are a subgradient picked by the LP
//!   (restricted to the concave piece holding the target); any such subgradient is valid.
//! - Every controlled flow carries the rate cap `x̂_f` (the plan's `flows[].rate`).
//!
//! Last, the weights are scaled to the instance's loss budget
//! ([`scale_weights_for_loss_budget`], the same function the simulations use): the weight
//! scale does not move MONtra's equilibrium rates but sets its equilibrium loss
//! (`w/x = q/(1-q)`), so the scale is chosen for the most expensive flow to lose
//! `inst.loss_budget` at its target. The scale is one number for the whole organisation's
//! plan (flows of different sites share links), computed from the whole instance.

use mongate_dataplane::montra::scale_weights_for_loss_budget;

use crate::pfo::instance::Instance;

/// Edge-case parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// Rates at or below this are "not used".
    pub rate_epsilon: f64,
    /// Path prices at or below this are "zero".
    pub price_epsilon: f64,
    /// Floor price as a fraction of the *smallest* positive path price of the used flows.
    pub floor_fraction: f64,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            rate_epsilon: 1e-9,
            price_epsilon: 1e-9,
            floor_fraction: 1.0,
        }
    }
}

/// MONtra settings for one flow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowTarget {
    /// `w_f`.
    pub weight: f64,
    /// Per-session rate cap (the PFO target `x̂_f`).
    pub rate_cap: f64,
    /// The flow gets a controller at all.
    pub controlled: bool,
    /// The weight is the floor weight (zero path price).
    pub floored: bool,
}

/// Path price `sum_{l in L(f)} mu_l` of every flow.
pub fn path_prices(inst: &Instance, duals: &[f64]) -> Vec<f64> {
    inst.flows
        .iter()
        .map(|f| f.links.iter().map(|&l| duals[l]).sum())
        .collect()
}

/// MONtra weights and caps from PFO's per-session rates `rates` (per flow) and link `duals`,
/// the weights scaled to `inst.loss_budget`.
pub fn montra_targets(
    inst: &Instance,
    rates: &[f64],
    duals: &[f64],
    cfg: &MappingConfig,
) -> Vec<FlowTarget> {
    let prices = path_prices(inst, duals);
    let min_price = rates
        .iter()
        .zip(&prices)
        .filter(|(x, p)| **x > cfg.rate_epsilon && **p > cfg.price_epsilon)
        .map(|(_, p)| *p)
        .fold(f64::INFINITY, f64::min);
    let floor_price = if min_price.is_finite() {
        cfg.floor_fraction * min_price
    } else {
        1.0
    };
    let mut targets: Vec<FlowTarget> = rates
        .iter()
        .zip(&prices)
        .map(|(&x, &p)| {
            if x <= cfg.rate_epsilon {
                FlowTarget {
                    weight: 0.0,
                    rate_cap: 0.0,
                    controlled: false,
                    floored: false,
                }
            } else if p <= cfg.price_epsilon {
                FlowTarget {
                    weight: x * floor_price,
                    rate_cap: x,
                    controlled: true,
                    floored: true,
                }
            } else {
                FlowTarget {
                    weight: x * p,
                    rate_cap: x,
                    controlled: true,
                    floored: false,
                }
            }
        })
        .collect();
    let mut weights: Vec<f64> = targets.iter().map(|t| t.weight).collect();
    scale_weights_for_loss_budget(&mut weights, rates, inst.loss_budget);
    for (t, w) in targets.iter_mut().zip(weights) {
        t.weight = w;
    }
    targets
}
