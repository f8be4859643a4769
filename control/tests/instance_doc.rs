//! Every JSON block of `docs/instance.md` is what the page says: a block fenced ```` ```json ````
//! is a valid instance that PFO solves, one fenced ```` ```json invalid ```` is refused.

use mongate_control::pfo::{Instance, SolveOptions, solve};

const PAGE: &str = include_str!("../../docs/instance.md");

/// The page's JSON blocks: (refused, text).
fn blocks() -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(bool, String)> = None;
    for line in PAGE.lines() {
        match (&mut cur, line.trim()) {
            (None, "```json") => cur = Some((false, String::new())),
            (None, "```json invalid") => cur = Some((true, String::new())),
            (Some(_), "```") => out.extend(cur.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    assert!(cur.is_none(), "an unclosed block in docs/instance.md");
    out
}

#[test]
fn every_example_of_the_instance_page_is_what_it_says() {
    let blocks = blocks();
    assert!(blocks.iter().filter(|b| !b.0).count() >= 3, "{blocks:?}");
    assert!(blocks.iter().any(|b| b.0), "{blocks:?}");
    for (refused, text) in &blocks {
        match (refused, Instance::from_json(text)) {
            (false, Ok(i)) => {
                let s = solve(&i, &SolveOptions::default());
                assert!(s.objective > 0.0, "{text}: objective {}", s.objective);
            }
            (false, Err(e)) => panic!("refused: {e}\n{text}"),
            (true, Ok(_)) => panic!("accepted, the page says refused:\n{text}"),
            (true, Err(e)) => assert!(e.to_string().contains("A-D"), "{e}"),
        }
    }
}

/// The page's first block is the shipped triangle instance.
#[test]
fn the_page_shows_the_shipped_triangle() {
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/examples/triangle/instance.json")).unwrap();
    let first: serde_json::Value = serde_json::from_str(&blocks()[0].1).unwrap();
    assert_eq!(first, shipped);
}
