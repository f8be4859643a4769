//! The seed corpus of the control's fuzz targets (`fuzz/corpus/pfo_instance/`,
//! `fuzz/corpus/handshake/`), made here; see the dataplane's
//! `tests/fuzz_corpus.rs` for the other targets and how to rewrite it
//! (`MONGATE_WRITE_CORPUS=1`).

use std::path::PathBuf;

use mongate_control::fuzz::fuzz_pfo_instance;
use mongate_control::secure::messages::{
    COOKIE_REPLY_LEN, CookieReply, INIT_LEN, Init, RESPONSE_LEN, Response, fuzz_handshake,
};
use mongate_dataplane::fuzz::sync_corpus;

fn instance(utility: &str, capacity: &str) -> Vec<u8> {
    format!(
        "{{\"links\":[{{\"id\":\"l\",\"capacity\":{capacity}}},{{\"id\":\"m\",\"capacity\":5}}],\
         \"classes\":[{{\"id\":\"c\",\"sessions\":3,\"utility\":{utility}}}],\
         \"flows\":[{{\"id\":\"f\",\"class\":\"c\",\"links\":[\"l\",\"m\"]}}]}}"
    )
    .into_bytes()
}

/// Bytes `i * 7 + k` (a recognisable, non-constant fill).
fn fill(b: &mut [u8], k: u8) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::try_from(i % 256)
            .unwrap()
            .wrapping_mul(7)
            .wrapping_add(k);
    }
}

fn handshake_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut init = vec![0u8; INIT_LEN];
    fill(&mut init, 1);
    let mut m = Init::new_emit(&mut init[..]).unwrap();
    m.set_sender(0x0102_0304);
    let mut resp = vec![0u8; RESPONSE_LEN];
    fill(&mut resp, 2);
    let mut m = Response::new_emit(&mut resp[..]).unwrap();
    m.set_sender(0x0506_0708);
    m.set_receiver(0x0102_0304);
    let mut cookie = vec![0u8; COOKIE_REPLY_LEN];
    fill(&mut cookie, 3);
    let mut m = CookieReply::new_emit(&mut cookie[..]).unwrap();
    m.set_receiver(0x0102_0304);
    let mut wrong_type = init.clone();
    wrong_type[0] = 5;
    vec![
        ("init", init.clone()),
        ("response", resp),
        ("cookie-reply", cookie),
        ("init-truncated", init[..INIT_LEN - 1].to_vec()),
        ("init-as-response", wrong_type),
        ("empty", Vec::new()),
    ]
}

#[test]
fn handshake_seed_corpus_is_committed_and_runs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let write = std::env::var_os("MONGATE_WRITE_CORPUS").is_some();
    let dir = root.join("fuzz/corpus/handshake");
    let wrong = sync_corpus(&dir, &handshake_seeds(), fuzz_handshake, write).unwrap();
    assert!(
        wrong.is_empty(),
        "fuzz/corpus/handshake differs from the generator ({wrong:?}): rerun with MONGATE_WRITE_CORPUS=1"
    );
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
