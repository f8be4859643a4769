//! Fuzz target: see `mongate_dataplane::wire::fuzz::fuzz_geneve`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_dataplane::wire::fuzz::fuzz_geneve(data);
});
