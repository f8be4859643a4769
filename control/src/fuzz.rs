//! Fuzz entry points of the control process's parsers. The cargo-fuzz
//! targets in `fuzz/` call these (built without the `solver` feature, so a
//! fuzz build does not compile HiGHS), and so do the property tests below.
//!
//! Each one takes arbitrary bytes and must not panic; `assert!`s state what
//! must hold of what was accepted.

use crate::pfo::instance::Instance;

/// PFO instance: JSON text to a validated [`Instance`]; for an accepted one,
/// every reference is an index in range, and each class's utility has a
/// piecewise-linear form on `[0, max_session_rate]` with a non-negative
/// (or NaN on absurd parameters, which the solver refuses) error bound.
pub fn fuzz_pfo_instance(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(inst) = Instance::from_json(text) else {
        return;
    };
    for f in &inst.flows {
        assert!(f.class < inst.classes.len());
        assert!(!f.links.is_empty() && f.links.iter().all(|&l| l < inst.links.len()));
    }
    for (c, class) in inst.classes.iter().enumerate() {
        assert!(class.flows.iter().all(|&f| inst.flows[f].class == c));
        let r_max = inst.max_session_rate(c);
        let (pwl, eps) = class.utility.to_pwl(r_max, 1e-3);
        assert!(!pwl.points().is_empty());
        assert!(eps >= 0.0 || eps.is_nan(), "negative error bound {eps}");
        core::hint::black_box(class.utility.eval(r_max.max(0.0)));
    }
    for l in 0..inst.links.len() {
        core::hint::black_box(inst.link_flows(l).count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn example_instance() {
        let text = include_str!("../../docs/examples/triangle-paper.json");
        assert!(Instance::from_json(text).is_ok());
        fuzz_pfo_instance(text.as_bytes());
    }

    proptest! {
        #[test]
        fn instance_any_text(s in "\\PC{0,200}") {
            fuzz_pfo_instance(s.as_bytes());
        }

        #[test]
        fn instance_shaped_text(cap in "[0-9.e+-]{1,6}", u in "(\\{\"linear\":\\{\"slope\":[0-9.]{1,4}\\}\\}|\\{\"log\":\\{\"weight\":[0-9.]{1,4},\"scale\":[0-9.e-]{1,5}\\}\\}|\\{\"step\":\\{\"threshold\":[0-9.e-]{1,5},\"value\":1\\}\\}|\\{\"sigmoid\":\\{\"weight\":1,\"midpoint\":[0-9.]{1,4},\"steepness\":[0-9.e-]{1,5}\\}\\})") {
            let text = format!(
                "{{\"links\":[{{\"id\":\"l\",\"capacity\":{cap}}}],\"classes\":[{{\"id\":\"c\",\"sessions\":3,\"utility\":{u}}}],\"flows\":[{{\"id\":\"f\",\"class\":\"c\",\"links\":[\"l\"]}}]}}"
            );
            fuzz_pfo_instance(text.as_bytes());
        }
    }
}
