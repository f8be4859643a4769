//! PFO instance: the JSON file format of `docs/pfo.md` / `pfo-instance.md` and its validated,
//! index-based form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::utility::UtilitySpec;

/// A link as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Unique link name.
    pub id: String,
    /// Capacity estimate `Ĉ_l` (>= 0, same unit as rates).
    pub capacity: f64,
}

/// A traffic class as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    /// Unique class name.
    pub id: String,
    /// Demand `N_c`: sessions that want service.
    pub sessions: u32,
    /// Mission utility of one session.
    pub utility: UtilitySpec,
}

/// A flow (class, route) as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Unique flow name.
    pub id: String,
    /// Class id.
    pub class: String,
    /// Link ids the route uses (at least one, no repeats).
    pub links: Vec<String>,
}

/// The instance file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    /// Links.
    pub links: Vec<LinkSpec>,
    /// Classes.
    pub classes: Vec<ClassSpec>,
    /// Flows.
    pub flows: Vec<FlowSpec>,
    /// MONtra's loss budget: the mapping scales every weight so that the
    /// most expensive flow's equilibrium loss is this fraction at its target
    /// (default [`DEFAULT_LOSS_BUDGET`]; docs/montra.md). Organisation-wide:
    /// flows of different sites share links, so every site must scale alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_budget: Option<f64>,
}

/// The loss budget when the instance names none: 1 %.
pub const DEFAULT_LOSS_BUDGET: f64 = 0.01;

/// Why an instance was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InstanceError {
    /// Not JSON of the expected shape.
    #[error("instance is not valid JSON for the PFO format: {0}")]
    Json(String),
    /// An entry breaks a rule; `entry` names it (e.g. `flow "x"`).
    #[error("{entry}: {reason}")]
    Invalid {
        /// The offending entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}

/// One problem of an instance file (see [`Instance::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProblem {
    /// JSON path of the field, e.g. `flows[1].links[0]`.
    pub field: String,
    /// The entry, e.g. `flow "A->C/direct"`.
    pub entry: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(entry: String, reason: impl Into<String>) -> InstanceError {
    InstanceError::Invalid {
        entry,
        reason: reason.into(),
    }
}

/// A validated link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Name.
    pub id: String,
    /// Capacity (>= 0).
    pub capacity: f64,
}

/// A validated class.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Name.
    pub id: String,
    /// Demand `N_c`.
    pub sessions: u32,
    /// Utility of one session.
    pub utility: UtilitySpec,
    /// Indices of this class's flows.
    pub flows: Vec<usize>,
}

/// A validated flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Name.
    pub id: String,
    /// Class index.
    pub class: usize,
    /// Link indices.
    pub links: Vec<usize>,
}

/// A validated instance: every reference resolved to an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Links.
    pub links: Vec<Link>,
    /// Classes.
    pub classes: Vec<Class>,
    /// Flows.
    pub flows: Vec<Flow>,
    /// MONtra's loss budget, in (0, 0.5] (see [`InstanceFile::loss_budget`]).
    pub loss_budget: f64,
}

impl Instance {
    /// Indices of the flows crossing link `l`.
    pub fn link_flows(&self, l: usize) -> impl Iterator<Item = usize> + '_ {
        self.flows
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.links.contains(&l))
            .map(|(i, _)| i)
    }

    /// Load of link `l` under the aggregate flow rates `y`.
    pub fn link_load(&self, l: usize, y: &[f64]) -> f64 {
        self.link_flows(l).map(|i| y[i]).sum()
    }

    /// Parses and validates JSON text.
    pub fn from_json(text: &str) -> Result<Self, InstanceError> {
        let file: InstanceFile =
            serde_json::from_str(text).map_err(|e| InstanceError::Json(e.to_string()))?;
        Self::from_file(&file)
    }

    /// Validates a parsed file. The error is the first problem of
    /// [`Instance::check`].
    pub fn from_file(file: &InstanceFile) -> Result<Self, InstanceError> {
        Self::check(file).map_err(|mut v| {
            let p = v.swap_remove(0);
            invalid(p.entry, p.reason)
        })
    }

    /// Validates a parsed file, reporting every problem (never an empty
    /// list), each with the JSON path of its field.
    pub fn check(file: &InstanceFile) -> Result<Self, Vec<InstanceProblem>> {
        let mut e = Vec::new();
        let mut problem = |field: String, entry: String, reason: String| {
            e.push(InstanceProblem {
                field,
                entry,
                reason,
            });
        };
        let mut link_idx = HashMap::new();
        let mut links = Vec::with_capacity(file.links.len());
        for (i, l) in file.links.iter().enumerate() {
            let entry = format!("link {:?}", l.id);
            if link_idx.contains_key(l.id.as_str()) {
                problem(format!("links[{i}].id"), entry, "duplicate link id".into());
                continue;
            }
            link_idx.insert(l.id.as_str(), links.len());
            if !l.capacity.is_finite() || l.capacity < 0.0 {
                problem(
                    format!("links[{i}].capacity"),
                    entry,
                    format!("capacity must be finite and >= 0, got {}", l.capacity),
                );
            }
            links.push(Link {
                id: l.id.clone(),
                capacity: l.capacity,
            });
        }
        let mut class_idx = HashMap::new();
        let mut classes = Vec::with_capacity(file.classes.len());
        for (i, c) in file.classes.iter().enumerate() {
            let entry = format!("class {:?}", c.id);
            if class_idx.contains_key(c.id.as_str()) {
                problem(
                    format!("classes[{i}].id"),
                    entry,
                    "duplicate class id".into(),
                );
                continue;
            }
            class_idx.insert(c.id.as_str(), classes.len());
            if let Err(r) = c.utility.validate() {
                problem(
                    format!("classes[{i}].utility"),
                    entry,
                    format!("utility: {r}"),
                );
            }
            classes.push(Class {
                id: c.id.clone(),
                sessions: c.sessions,
                utility: c.utility.clone(),
                flows: Vec::new(),
            });
        }
        let mut flow_ids = HashMap::new();
        let mut flows = Vec::with_capacity(file.flows.len());
        for (i, f) in file.flows.iter().enumerate() {
            let entry = format!("flow {:?}", f.id);
            if flow_ids.insert(f.id.as_str(), ()).is_some() {
                problem(format!("flows[{i}].id"), entry, "duplicate flow id".into());
                continue;
            }
            let class = class_idx.get(f.class.as_str()).copied();
            if class.is_none() {
                problem(
                    format!("flows[{i}].class"),
                    entry.clone(),
                    format!("unknown class {:?}", f.class),
                );
            }
            if f.links.is_empty() {
                problem(
                    format!("flows[{i}].links"),
                    entry.clone(),
                    "a flow must use at least one link".into(),
                );
            }
            let mut ls = Vec::with_capacity(f.links.len());
            for (j, name) in f.links.iter().enumerate() {
                let Some(&l) = link_idx.get(name.as_str()) else {
                    problem(
                        format!("flows[{i}].links[{j}]"),
                        entry.clone(),
                        format!("unknown link {name:?}"),
                    );
                    continue;
                };
                if ls.contains(&l) {
                    problem(
                        format!("flows[{i}].links[{j}]"),
                        entry.clone(),
                        format!("uses link {name:?} twice"),
                    );
                    continue;
                }
                ls.push(l);
            }
            if let Some(class) = class {
                classes[class].flows.push(flows.len());
                flows.push(Flow {
                    id: f.id.clone(),
                    class,
                    links: ls,
                });
            }
        }
        let loss_budget = file.loss_budget.unwrap_or(DEFAULT_LOSS_BUDGET);
        if !(loss_budget > 0.0 && loss_budget <= 0.5) {
            problem(
                "loss_budget".into(),
                "loss_budget".into(),
                format!("must be in (0, 0.5], got {loss_budget}"),
            );
        }
        if !e.is_empty() {
            return Err(e);
        }
        Ok(Instance {
            links,
            classes,
            flows,
            loss_budget,
        })
    }

    /// Largest per-session rate class `c` can ever get (one session alone on every route):
    /// `sum_f min_{l in f} C_l`.
    pub fn max_session_rate(&self, c: usize) -> f64 {
        self.classes[c]
            .flows
            .iter()
            .map(|&f| {
                self.flows[f]
                    .links
                    .iter()
                    .map(|&l| self.links[l].capacity)
                    .fold(f64::INFINITY, f64::min)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "links":   [ {"id": "A-B", "capacity": 10.0}, {"id": "B-C", "capacity": 5.0},
                   {"id": "A-C", "capacity": 10.0} ],
      "classes": [ {"id": "video-A-C", "sessions": 10,
                    "utility": {"piecewise_linear": [[0.0, 0.0], [1.0, 0.1], [2.0, 0.9], [4.0, 1.0]]}} ],
      "flows":   [ {"id": "video-A-C/direct", "class": "video-A-C", "links": ["A-C"]},
                   {"id": "video-A-C/via-B",  "class": "video-A-C", "links": ["A-B", "B-C"]} ]
    }"#;

    fn err_of(text: &str) -> String {
        Instance::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let i = Instance::from_json(GOOD).unwrap();
        assert_eq!(i.classes[0].flows, vec![0, 1]);
        assert_eq!(i.flows[1].links, vec![0, 1]);
        assert!((i.max_session_rate(0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_with_the_offending_entry_named() {
        let e = err_of(&GOOD.replace(r#"["A-B", "B-C"]"#, r#"["A-B", "X-Y"]"#));
        assert!(
            e.contains("video-A-C/via-B") && e.contains("unknown link \"X-Y\""),
            "{e}"
        );
        let e = err_of(&GOOD.replace(
            r#""class": "video-A-C", "links": ["A-C"]"#,
            r#""class": "nope", "links": ["A-C"]"#,
        ));
        assert!(
            e.contains("video-A-C/direct") && e.contains("unknown class"),
            "{e}"
        );
        let e = err_of(&GOOD.replace(r#""capacity": 5.0"#, r#""capacity": -5.0"#));
        assert!(e.contains("link \"B-C\"") && e.contains("capacity"), "{e}");
        let e = err_of(&GOOD.replace("[4.0, 1.0]", "[4.0, 0.5]"));
        assert!(
            e.contains("class \"video-A-C\"") && e.contains("non-decreasing"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("[4.0, 1.0]", "[2.0, 1.0]"));
        assert!(e.contains("strictly increasing"), "{e}");
        let e = err_of(&GOOD.replace(
            r#"{"id": "A-C", "capacity": 10.0}"#,
            r#"{"id": "A-B", "capacity": 10.0}"#,
        ));
        assert!(e.contains("link \"A-B\"") && e.contains("duplicate"), "{e}");
        let e = err_of(&GOOD.replace("video-A-C/via-B", "video-A-C/direct"));
        assert!(e.contains("duplicate flow"), "{e}");
        let e = err_of(&GOOD.replace(r#"["A-C"]"#, "[]"));
        assert!(e.contains("at least one link"), "{e}");
        let e = err_of(&GOOD.replace(r#""sessions": 10"#, r#""sessions": -1"#));
        assert!(e.contains("JSON"), "{e}");
        let e = err_of(&GOOD.replace("piecewise_linear", "cubic"));
        assert!(e.contains("JSON"), "{e}");
    }
}
