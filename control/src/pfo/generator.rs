//! Benchmark instances: a minimal Topology Zoo GraphML reader (nodes and edges only) and a
//! seeded generator of PFO instances over it (random site pairs, k shortest routes, mixed
//! sigmoid-like / step-like / concave piecewise-linear utilities).

use std::collections::VecDeque;

use super::instance::{ClassSpec, FlowSpec, InstanceFile, LinkSpec};
use super::utility::UtilitySpec;

/// An undirected graph read from GraphML.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Node ids as written in the file.
    pub nodes: Vec<String>,
    /// Edges as node index pairs (parallel edges and self loops dropped).
    pub edges: Vec<(usize, usize)>,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Reads `<node id=..>` and `<edge source=.. target=..>` elements. Errors name the problem.
pub fn parse_graphml(text: &str) -> Result<Graph, String> {
    let mut nodes: Vec<String> = Vec::new();
    let mut raw_edges = Vec::new();
    for (pos, _) in text.match_indices('<') {
        let rest = &text[pos + 1..];
        let end = rest
            .find('>')
            .ok_or_else(|| format!("unterminated tag at byte {pos}"))?;
        let tag = &rest[..end];
        if tag.starts_with("node ") || tag.starts_with("node\t") {
            let id = attr(tag, "id").ok_or_else(|| format!("node without id at byte {pos}"))?;
            nodes.push(id.to_string());
        } else if tag.starts_with("edge ") || tag.starts_with("edge\t") {
            let s =
                attr(tag, "source").ok_or_else(|| format!("edge without source at byte {pos}"))?;
            let t =
                attr(tag, "target").ok_or_else(|| format!("edge without target at byte {pos}"))?;
            raw_edges.push((s.to_string(), t.to_string()));
        }
    }
    let index = |id: &str| nodes.iter().position(|n| n == id);
    let mut edges = Vec::new();
    for (s, t) in &raw_edges {
        let a = index(s).ok_or_else(|| format!("edge references unknown node {s:?}"))?;
        let b = index(t).ok_or_else(|| format!("edge references unknown node {t:?}"))?;
        let e = (a.min(b), a.max(b));
        if a != b && !edges.contains(&e) {
            edges.push(e);
        }
    }
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    Ok(Graph { nodes, edges })
}

/// SplitMix64: a small seeded generator (deterministic across platforms).
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits -> exact double in [0, 1).
        let v = (self.next_u64() >> 11) as f64;
        v / 9_007_199_254_740_992.0
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }
}

fn adjacency(g: &Graph) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); g.nodes.len()];
    for &(a, b) in &g.edges {
        adj[a].push(b);
        adj[b].push(a);
    }
    for v in &mut adj {
        v.sort_unstable();
    }
    adj
}

/// BFS shortest path avoiding `banned_nodes` and `banned_edges` (directed pairs).
fn bfs(
    adj: &[Vec<usize>],
    src: usize,
    dst: usize,
    banned_nodes: &[usize],
    banned_edges: &[(usize, usize)],
) -> Option<Vec<usize>> {
    let mut prev = vec![usize::MAX; adj.len()];
    let mut seen = vec![false; adj.len()];
    for &b in banned_nodes {
        seen[b] = true;
    }
    if seen[src] {
        return None;
    }
    seen[src] = true;
    let mut q = VecDeque::from([src]);
    while let Some(u) = q.pop_front() {
        if u == dst {
            let mut path = vec![dst];
            let mut v = dst;
            while v != src {
                v = prev[v];
                path.push(v);
            }
            path.reverse();
            return Some(path);
        }
        for &v in &adj[u] {
            if !seen[v] && !banned_edges.contains(&(u, v)) {
                seen[v] = true;
                prev[v] = u;
                q.push_back(v);
            }
        }
    }
    None
}

/// Up to `k` loop-free shortest paths (by hop count) from `src` to `dst` (Yen's algorithm).
pub fn k_shortest_paths(g: &Graph, src: usize, dst: usize, k: usize) -> Vec<Vec<usize>> {
    let adj = adjacency(g);
    let Some(first) = bfs(&adj, src, dst, &[], &[]) else {
        return Vec::new();
    };
    let mut found = vec![first];
    let mut candidates: Vec<Vec<usize>> = Vec::new();
    while found.len() < k {
        let last = found[found.len() - 1].clone();
        for i in 0..last.len() - 1 {
            let root = &last[..=i];
            let banned_edges: Vec<(usize, usize)> = found
                .iter()
                .filter(|p| p.len() > i + 1 && p[..=i] == *root)
                .map(|p| (p[i], p[i + 1]))
                .collect();
            let banned_nodes: Vec<usize> = root[..i].to_vec();
            if let Some(spur) = bfs(&adj, root[i], dst, &banned_nodes, &banned_edges) {
                let mut path = root[..i].to_vec();
                path.extend(spur);
                if !found.contains(&path) && !candidates.contains(&path) {
                    candidates.push(path);
                }
            }
        }
        if candidates.is_empty() {
            break;
        }
        // Shortest candidate; ties by lexicographic order for determinism.
        let best = (0..candidates.len())
            .min_by(|&a, &b| {
                candidates[a]
                    .len()
                    .cmp(&candidates[b].len())
                    .then(candidates[a].cmp(&candidates[b]))
            })
            .unwrap_or(0);
        found.push(candidates.swap_remove(best));
    }
    found
}

/// Benchmark instance parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// Number of classes (random distinct site pairs).
    pub classes: usize,
    /// Sessions `N_c` per class.
    pub sessions: u32,
    /// Capacity of every directed link.
    pub capacity: f64,
    /// Routes per class (k shortest).
    pub routes: usize,
    /// Segments per utility.
    pub segments: usize,
    /// Seed.
    pub seed: u64,
}

/// A utility with `segments` linear pieces: kind 0 sigmoid-like, 1 step-like, 2 concave.
fn make_utility(rng: &mut SplitMix, kind: usize, segments: usize) -> UtilitySpec {
    let segs = segments.max(1);
    let top = rng.range(1.0, 4.0); // rate where the utility saturates
    let weight = rng.range(0.5, 2.0);
    let grid = |i: usize| i as f64 / segs as f64;
    let pts: Vec<[f64; 2]> = match kind {
        0 => {
            let k = rng.range(4.0, 10.0);
            let s = |t: f64| 1.0 / (1.0 + (-k * (t - 0.5)).exp());
            let (s0, s1) = (s(0.0), s(1.0));
            (0..=segs)
                .map(|i| [top * grid(i), weight * (s(grid(i)) - s0) / (s1 - s0)])
                .collect()
        }
        1 => {
            // Nearly nothing below the threshold, a steep rise, then small increments.
            let thr = rng.range(0.4, 0.8);
            let mut pts = vec![[0.0, 0.0]];
            let rise = segs / 2;
            for i in 1..=segs {
                let t = grid(i);
                let r = if i <= rise {
                    let f = i as f64 / rise.max(1) as f64;
                    thr * f
                } else {
                    let f = (i - rise) as f64 / (segs - rise).max(1) as f64;
                    thr + (1.0 - thr) * f
                };
                let u = if i < rise {
                    0.02 * weight * t
                } else if i == rise {
                    0.8 * weight
                } else {
                    weight * (0.8 + 0.2 * (r - thr) / (1.0 - thr))
                };
                pts.push([top * r, u]);
            }
            pts
        }
        _ => (0..=segs)
            .map(|i| {
                [
                    top * grid(i),
                    weight * (1.0 + 4.0 * grid(i)).ln() / 5f64.ln(),
                ]
            })
            .collect(),
    };
    UtilitySpec::PiecewiseLinear(pts)
}

/// Instance over `g`: every undirected edge becomes two directed links of `capacity`.
pub fn generate(g: &Graph, p: &GenParams) -> InstanceFile {
    let mut rng = SplitMix::new(p.seed);
    let name = |v: usize| g.nodes[v].clone();
    let mut links = Vec::new();
    for &(a, b) in &g.edges {
        links.push(LinkSpec {
            id: format!("{}>{}", name(a), name(b)),
            capacity: p.capacity,
        });
        links.push(LinkSpec {
            id: format!("{}>{}", name(b), name(a)),
            capacity: p.capacity,
        });
    }
    let mut classes = Vec::new();
    let mut flows = Vec::new();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let n = g.nodes.len();
    let mut attempts = 0;
    while classes.len() < p.classes && attempts < 100 * p.classes.max(1) && n > 1 {
        attempts += 1;
        let (s, d) = (rng.index(n), rng.index(n));
        if s == d || pairs.contains(&(s, d)) {
            continue;
        }
        let paths = k_shortest_paths(g, s, d, p.routes);
        if paths.is_empty() {
            continue;
        }
        pairs.push((s, d));
        let c = classes.len();
        let id = format!("c{c}-{}-{}", name(s), name(d));
        for (r, path) in paths.iter().enumerate() {
            flows.push(FlowSpec {
                id: format!("{id}/r{r}"),
                class: id.clone(),
                links: path
                    .windows(2)
                    .map(|w| format!("{}>{}", name(w[0]), name(w[1])))
                    .collect(),
            });
        }
        classes.push(ClassSpec {
            id,
            sessions: p.sessions,
            utility: make_utility(&mut rng, c % 3, p.segments),
        });
    }
    InstanceFile {
        links,
        classes,
        flows,
        loss_budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = r#"<graphml><graph>
      <node id="a"/><node id="b"/><node id="c"/><node id="d"/>
      <edge source="a" target="b"/><edge source="b" target="c"/>
      <edge source="c" target="d"/><edge source="d" target="a"/><edge source="a" target="c"/>
    </graph></graphml>"#;

    #[test]
    fn parses_nodes_and_edges() {
        let g = parse_graphml(RING).unwrap();
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.edges.len(), 5);
        assert!(parse_graphml("<edge source=\"x\" target=\"y\">").is_err());
    }

    #[test]
    fn yen_finds_distinct_loop_free_paths_in_length_order() {
        let g = parse_graphml(RING).unwrap();
        let p = k_shortest_paths(&g, 0, 2, 3);
        assert_eq!(p[0], vec![0, 2]);
        assert_eq!(p.len(), 3);
        assert!(p[1].len() == 3 && p[2].len() == 3 && p[1] != p[2]);
    }

    #[test]
    fn generated_instances_validate_and_are_deterministic() {
        let g = parse_graphml(RING).unwrap();
        let params = GenParams {
            classes: 5,
            sessions: 3,
            capacity: 10.0,
            routes: 2,
            segments: 8,
            seed: 7,
        };
        let a = generate(&g, &params);
        assert_eq!(a, generate(&g, &params));
        assert_eq!(a.classes.len(), 5);
        crate::pfo::Instance::from_file(&a).unwrap();
    }
}
