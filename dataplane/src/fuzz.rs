//! Fuzz entry points of the parsers outside [`crate::wire`] (whose own are in
//! [`crate::wire::fuzz`]): control-ring messages, the site configuration and
//! plan files. The cargo-fuzz targets in `fuzz/` call these, and so do the
//! property tests below, so the bodies run in CI on stable too.
//!
//! Each one takes arbitrary bytes, must not panic, and checks with `assert!`
//! that what was accepted survives a round trip (a failing invariant is a
//! bug the fuzzer should report).

use std::sync::OnceLock;

use crate::config::Config;
use crate::plan::{PlanFile, PlanShape};
use crate::shm::msg::{Command, MSG_WORDS, Msg, Telemetry};

/// The bytes of one ring slot.
pub const MSG_BYTES: usize = core::mem::size_of::<Msg>();

/// The [`Msg`] whose memory is the first [`MSG_BYTES`] of `data` (zero
/// padded), as a reader of the ring sees a slot a writer filled.
pub fn msg_from_bytes(data: &[u8]) -> Msg {
    let mut b = [0u8; MSG_BYTES];
    let n = data.len().min(MSG_BYTES);
    b[..n].copy_from_slice(&data[..n]);
    let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let mut w = [0u64; MSG_WORDS];
    for (k, x) in w.iter_mut().enumerate() {
        *x = u64_at(16 + 8 * k);
    }
    Msg {
        kind: u32_at(0),
        len: u32_at(4),
        epoch: u64_at(8),
        w,
    }
}

/// Ring messages: any 256 bytes decode as a command and as telemetry to a
/// value or an error; a decoded value encodes to a message that decodes to
/// the same encoding (the canonical form is a fixed point).
pub fn fuzz_ring_msg(data: &[u8]) {
    let m = msg_from_bytes(data);
    if let Ok(c) = Command::decode(&m) {
        let e = c.encode();
        let back = Command::decode(&e).expect("an encoded command decodes");
        assert_eq!(back.encode(), e);
    }
    if let Ok(t) = Telemetry::decode(&m) {
        let e = t.encode();
        let back = Telemetry::decode(&e).expect("encoded telemetry decodes");
        assert_eq!(back.encode(), e);
    }
}

/// Site configuration: TOML text to a validated [`Config`]; an accepted
/// configuration serializes to TOML that loads back to the same value, and
/// its plan shape and plan are consistent.
pub fn fuzz_site_config(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    let shape = PlanShape::from_config(&cfg);
    assert_eq!(
        (shape.classes(), shape.flows()),
        (cfg.classes.len(), cfg.flows.len())
    );
    if let Some(p) = &cfg.plan {
        assert_eq!(
            p.check(&shape),
            Ok(()),
            "a loaded plan fits its configuration"
        );
    }
    let out = cfg
        .to_toml_string()
        .expect("a loaded configuration serializes");
    let back = Config::from_toml_str(&out, "fuzz-out.toml")
        .unwrap_or_else(|e| panic!("serialized configuration does not load: {e}\n{out}"));
    assert_eq!(back, cfg);
}

/// The configuration plan files are resolved against in [`fuzz_plan_file`]:
/// the documented example site.
fn example_config() -> Option<&'static Config> {
    static CFG: OnceLock<Option<Config>> = OnceLock::new();
    CFG.get_or_init(|| {
        Config::from_toml_str(
            include_str!("../../docs/examples/site-a.toml"),
            "site-a.toml",
        )
        .ok()
    })
    .as_ref()
}

/// Plan files: TOML text to a [`PlanFile`], resolved against the example
/// site; a resolved plan passes its table check, and written back by id it
/// resolves to the same table.
pub fn fuzz_plan_file(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(plan) = PlanFile::from_toml_str(text, "fuzz-plan.toml") else {
        return;
    };
    let Some(cfg) = example_config() else {
        return;
    };
    let Ok(table) = plan.resolve(cfg) else {
        return;
    };
    let shape = PlanShape::from_config(cfg);
    assert_eq!(
        table.check(&shape),
        Ok(()),
        "a resolved plan passes its check"
    );
    let again = table
        .to_file(cfg)
        .resolve(cfg)
        .expect("a table written by id resolves");
    assert_eq!(again, table);
}

/// Checks (or, with `write`, makes) `dir` hold `seeds` (file name, bytes)
/// and runs each through `body`: the committed seed corpus of a fuzz target
/// stays what its generator (a test of the crate) makes, and every seed runs
/// on stable, as does every other file there (a `crash-*` reproducer of a
/// fixed crash, kept as found, or what a local fuzzer run added; `write`
/// removes the latter). Returns the names of missing or different seeds
/// (empty when in sync).
pub fn sync_corpus(
    dir: &std::path::Path,
    seeds: &[(&str, Vec<u8>)],
    body: fn(&[u8]),
    write: bool,
) -> std::io::Result<Vec<String>> {
    let mut wrong = Vec::new();
    if write {
        std::fs::create_dir_all(dir)?;
    }
    let mut present: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    for (name, bytes) in seeds {
        body(bytes);
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            if write {
                std::fs::write(&path, bytes)?;
            } else {
                wrong.push((*name).to_owned());
            }
        }
        present.retain(|p| p != name);
    }
    for extra in present {
        if write && !extra.starts_with("crash-") {
            std::fs::remove_file(dir.join(&extra))?;
        } else {
            // A reproducer kept as found, or an input a local fuzzer run
            // added: it must not crash.
            body(&std::fs::read(dir.join(&extra))?);
        }
    }
    Ok(wrong)
}

/// A frame as the packet capture handles it: the classifier's inner parse
/// (the LAN hot path's, and the capture filter's), the frame copied into a
/// mirror slot at a snap length the input chooses (bounded by the slot and
/// the frame, its bytes the frame's prefix), written as a pcap record that
/// reads back equal; and the input itself read as a pcap file (the capture
/// reader's parser) without a panic.
pub fn fuzz_capture_frame(data: &[u8]) {
    use crate::mirror::{SNAP_MAX, Slot, SlotMeta, pcap};
    if let Ok(i) = crate::classify::inner::parse(data) {
        core::hint::black_box(i);
    }
    let snap = usize::from(data.first().copied().unwrap_or(0)) * 16;
    let meta = SlotMeta {
        ts_ns: 1,
        generation: 2,
        port: 0,
        side: crate::mirror::SIDE_LAN,
        dir: crate::mirror::DIR_RX,
    };
    let slot = Slot::new(meta, data, snap);
    let got = slot.bytes();
    assert!(got.len() <= snap.min(data.len()).min(SNAP_MAX));
    assert_eq!(got, &data[..got.len()]);
    let mut w = pcap::PcapWriter::new(Vec::new(), 65535).expect("writing to a Vec");
    w.record(1_700_000_000_000_000_000, slot.orig_len, got)
        .expect("writing to a Vec");
    let (_, _, recs) = pcap::parse(&w.into_inner()).expect("our own file parses");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].data, got);
    core::hint::black_box(pcap::parse(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn example_config_loads() {
        assert!(example_config().is_some());
    }

    #[test]
    fn ring_msg_of_encoded_command() {
        let c = Command::Probe {
            id: 7,
            path: 3,
            count: 2,
            interval_ns: 1000,
        };
        let m = c.encode();
        let mut b = Vec::new();
        b.extend_from_slice(&m.kind.to_ne_bytes());
        b.extend_from_slice(&m.len.to_ne_bytes());
        b.extend_from_slice(&m.epoch.to_ne_bytes());
        for w in m.w {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(b.len(), MSG_BYTES);
        assert_eq!(msg_from_bytes(&b), m);
        fuzz_ring_msg(&b);
    }

    proptest! {
        #[test]
        fn ring_msg_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300), kind in 0u32..32, len in 0u32..40) {
            let mut d = data;
            d.resize(MSG_BYTES, 0);
            // Half the cases with a known kind and a small count.
            d[..4].copy_from_slice(&kind.to_ne_bytes());
            d[4..8].copy_from_slice(&len.to_ne_bytes());
            fuzz_ring_msg(&d);
        }

        #[test]
        fn capture_frame_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2200)) {
            fuzz_capture_frame(&data);
        }

        #[test]
        fn config_any_text(s in "\\PC{0,200}") {
            fuzz_site_config(s.as_bytes());
        }

        #[test]
        fn plan_any_text(s in "(epoch = [0-9]{1,3}\n)?(\\[\\[classes\\]\\]\nid = \"(bulk-ac|video-ac|x)\"\nsessions = [0-9]{1,2}\n){0,2}(\\[\\[flows\\]\\]\nid = \"(bulk-ac-direct|video-ac-direct|y)\"\nrate_mbps = [0-9.]{1,4}\nweight = [0-9]{1,2}\n){0,2}") {
            fuzz_plan_file(s.as_bytes());
        }
    }
}
