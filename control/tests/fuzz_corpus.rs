//! The seed corpus of the `pfo_instance` fuzz target
//! (`fuzz/corpus/pfo_instance/`), made here; see the dataplane's
//! `tests/fuzz_corpus.rs` for the other targets and how to rewrite it
//! (`MONGATE_WRITE_CORPUS=1`).

use std::path::PathBuf;

use mongate_control::fuzz::fuzz_pfo_instance;
use mongate_dataplane::fuzz::sync_corpus;

fn instance(utility: &str, capacity: &str) -> Vec<u8> {
    format!(
        "{{\"links\":[{{\"id\":\"l\",\"capacity\":{capacity}}},{{\"id\":\"m\",\"capacity\":5}}],\
         \"classes\":[{{\"id\":\"c\",\"sessions\":3,\"utility\":{utility}}}],\
         \"flows\":[{{\"id\":\"f\",\"class\":\"c\",\"links\":[\"l\",\"m\"]}}]}}"
    )
    .into_bytes()
}

#[test]
fn seed_corpus_is_committed_and_runs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = |p: &str| std::fs::read(root.join("docs/examples").join(p)).unwrap();
    let seeds = vec![
        ("triangle-paper", example("triangle-paper.json")),
        ("triangle", example("triangle/instance.json")),
        ("linear", instance("{\"linear\":{\"slope\":2}}", "10")),
        ("log", instance("{\"log\":{\"weight\":1,\"scale\":0.5}}", "10")),
        (
            "sigmoid",
            instance(
                "{\"sigmoid\":{\"weight\":1,\"midpoint\":4,\"steepness\":2}}",
                "10",
            ),
        ),
        (
            "step",
            instance("{\"step\":{\"threshold\":3,\"value\":1}}", "1e300"),
        ),
        (
            "piecewise",
            instance("{\"piecewise_linear\":[[0,0],[1,2],[4,3]]}", "0"),
        ),
        ("negative-capacity", instance("{\"linear\":{\"slope\":1}}", "-1")),
        (
            "unknown-link",
            b"{\"links\":[],\"classes\":[{\"id\":\"c\",\"sessions\":1,\"utility\":{\"linear\":{\"slope\":1}}}],\"flows\":[{\"id\":\"f\",\"class\":\"c\",\"links\":[\"x\"]}]}".to_vec(),
        ),
        ("empty", b"{\"links\":[],\"classes\":[],\"flows\":[]}".to_vec()),
        ("not-json", b"{\"links\":[".to_vec()),
    ];
    let write = std::env::var_os("MONGATE_WRITE_CORPUS").is_some();
    let dir = root.join("fuzz/corpus/pfo_instance");
    let wrong = sync_corpus(&dir, &seeds, fuzz_pfo_instance, write).unwrap();
    assert!(
        wrong.is_empty(),
        "fuzz/corpus/pfo_instance differs from the generator ({wrong:?}): rerun with MONGATE_WRITE_CORPUS=1"
    );
}
