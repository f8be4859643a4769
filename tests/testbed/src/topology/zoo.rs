//! Internet Topology Zoo graphs (GraphML, Knight et al., JSAC 2011) as
//! emulated sites: every node a site, every edge a WAN link.
//!
//! Only what the emulation needs is read: the node ids and `label`s, and the
//! edges' ends. Site names are the labels reduced to `[A-Za-z0-9]` and cut
//! to 12 characters (the testbed's limit), made unique; parallel edges
//! become one link (their count is kept), self-loops are ignored.

use crate::error::{Error, Result};

/// Abilene (Internet2, 2005): 11 nodes, 14 edges, the copy in
/// `docs/examples/topologyzoo/`.
pub const ABILENE: &str = include_str!("../../../../docs/examples/topologyzoo/Abilene.graphml");

/// The graphs shipped with the repository, by name.
pub const SHIPPED: [(&str, &str); 1] = [("Abilene", ABILENE)];

/// One node of a zoo graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZooNode {
    /// GraphML node id.
    pub id: String,
    /// Its label (a city), as in the file.
    pub label: String,
    /// The site name the emulation uses (from the label).
    pub site: String,
}

/// An undirected zoo graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZooGraph {
    /// The network's name (graph `label` or `Network`), if the file has one.
    pub name: String,
    /// Nodes, in file order.
    pub nodes: Vec<ZooNode>,
    /// Distinct edges as node indices `(a, b)` with `a < b`, in file order
    /// of their first appearance.
    pub edges: Vec<(usize, usize)>,
    /// Parallel edges folded into one.
    pub parallel_edges: usize,
}

impl ZooGraph {
    /// Parses a GraphML text; a clear error for anything it cannot use.
    pub fn parse(text: &str) -> Result<Self> {
        let doc = roxmltree::Document::parse(text)
            .map_err(|e| Error::Invalid(format!("graphml: {e}")))?;
        let root = doc.root_element();
        if root.tag_name().name() != "graphml" {
            return Err(Error::Invalid(format!(
                "graphml: root element is <{}>, not <graphml>",
                root.tag_name().name()
            )));
        }
        // Data keys: which `key` ids name the node label and the graph's name.
        let mut node_label = None;
        let mut graph_names = Vec::new();
        for k in root.children().filter(|n| n.has_tag_name("key")) {
            let (Some(name), Some(id)) = (k.attribute("attr.name"), k.attribute("id")) else {
                continue;
            };
            match (k.attribute("for"), name) {
                (Some("node"), "label") => node_label = Some(id.to_owned()),
                (Some("graph"), "label" | "Network") => graph_names.push(id.to_owned()),
                _ => {}
            }
        }
        let graph = root
            .children()
            .find(|n| n.has_tag_name("graph"))
            .ok_or_else(|| Error::Invalid("graphml: no <graph> element".into()))?;
        let data = |n: roxmltree::Node<'_, '_>, key: &str| -> Option<String> {
            n.children()
                .filter(|c| c.has_tag_name("data") && c.attribute("key") == Some(key))
                .find_map(|c| c.text().map(|t| t.trim().to_owned()))
        };
        let name = graph_names
            .iter()
            .find_map(|k| data(graph, k))
            .unwrap_or_default();
        let mut nodes: Vec<ZooNode> = Vec::new();
        for n in graph.children().filter(|n| n.has_tag_name("node")) {
            let id = n
                .attribute("id")
                .ok_or_else(|| Error::Invalid("graphml: a <node> without an id".into()))?
                .to_owned();
            if nodes.iter().any(|o| o.id == id) {
                return Err(Error::Invalid(format!("graphml: node id {id:?} twice")));
            }
            let label = node_label
                .as_deref()
                .and_then(|k| data(n, k))
                .unwrap_or_default();
            nodes.push(ZooNode {
                id,
                label,
                site: String::new(),
            });
        }
        if nodes.len() < 2 {
            return Err(Error::Invalid(format!(
                "graphml: {} node(s); a network needs at least 2",
                nodes.len()
            )));
        }
        let index = |id: Option<&str>, what: &str| -> Result<usize> {
            let id =
                id.ok_or_else(|| Error::Invalid(format!("graphml: an <edge> without {what}")))?;
            nodes
                .iter()
                .position(|n| n.id == id)
                .ok_or_else(|| Error::Invalid(format!("graphml: edge {what} {id:?} is no node")))
        };
        let mut edges: Vec<(usize, usize)> = Vec::new();
        let mut parallel_edges = 0;
        for e in graph.children().filter(|n| n.has_tag_name("edge")) {
            let a = index(e.attribute("source"), "source")?;
            let b = index(e.attribute("target"), "target")?;
            if a == b {
                continue;
            }
            let key = (a.min(b), a.max(b));
            if edges.contains(&key) {
                parallel_edges += 1;
            } else {
                edges.push(key);
            }
        }
        site_names(&mut nodes);
        Ok(Self {
            name,
            nodes,
            edges,
            parallel_edges,
        })
    }

    /// A shipped graph by name (case-insensitive), e.g. `Abilene`.
    pub fn shipped(name: &str) -> Option<Result<Self>> {
        SHIPPED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, text)| Self::parse(text))
    }

    /// Node indices adjacent to `i`, ascending.
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .edges
            .iter()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// True when an edge joins `a` and `b`.
    pub fn adjacent(&self, a: usize, b: usize) -> bool {
        self.edges.contains(&(a.min(b), a.max(b)))
    }
}

/// Site names from labels: `[A-Za-z0-9]` only, at most 12 characters, `N<id>`
/// for an empty label, a numeric suffix where two would be equal.
fn site_names(nodes: &mut [ZooNode]) {
    let mut taken: Vec<String> = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        let mut base: String = n
            .label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        if base.is_empty() {
            base = format!("N{i}");
        }
        let mut name = base.clone();
        let mut k = 2;
        while taken.contains(&name) {
            let suffix = k.to_string();
            let keep = 12usize.saturating_sub(suffix.len()).min(base.len());
            name = format!("{}{suffix}", &base[..keep]);
            k += 1;
        }
        taken.push(name.clone());
        n.site = name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abilene_has_eleven_sites_and_fourteen_links() {
        let g = ZooGraph::shipped("abilene").unwrap().unwrap();
        assert_eq!(g.name, "Abilene");
        assert_eq!(g.nodes.len(), 11);
        assert_eq!(g.edges.len(), 14);
        assert_eq!(g.parallel_edges, 0);
        assert_eq!(g.nodes[0].label, "New York");
        assert_eq!(g.nodes[0].site, "NewYork");
        assert_eq!(g.nodes[10].site, "Indianapolis");
        assert!(g.nodes.iter().all(|n| n.site.len() <= 12));
        assert_eq!(g.neighbours(7), vec![6, 8, 10]);
        assert!(g.adjacent(10, 9) && !g.adjacent(0, 10));
    }

    #[test]
    fn names_are_made_unique_and_short() {
        let text = r#"<graphml><key attr.name="label" for="node" id="d1"/><graph>
            <node id="a"><data key="d1">Saint Petersburg North</data></node>
            <node id="b"><data key="d1">Saint Petersburg South</data></node>
            <node id="c"/>
            <edge source="a" target="b"/><edge source="b" target="a"/><edge source="c" target="c"/>
            </graph></graphml>"#;
        let g = ZooGraph::parse(text).unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.site.as_str()).collect();
        assert_eq!(names, ["SaintPetersb", "SaintPeters2", "N2"]);
        assert_eq!(g.edges, vec![(0, 1)]);
        assert_eq!(g.parallel_edges, 1);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        for (text, want) in [
            ("", "graphml"),
            ("<graphml>", "graphml"),
            ("<svg/>", "not <graphml>"),
            ("<graphml/>", "no <graph>"),
            (
                "<graphml><graph><node id='a'/></graph></graphml>",
                "at least 2",
            ),
            (
                "<graphml><graph><node id='a'/><node id='a'/></graph></graphml>",
                "twice",
            ),
            (
                "<graphml><graph><node id='a'/><node id='b'/><edge source='a' target='z'/></graph></graphml>",
                "is no node",
            ),
            (
                "<graphml><graph><node id='a'/><node id='b'/><edge source='a'/></graph></graphml>",
                "without target",
            ),
        ] {
            let e = ZooGraph::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
