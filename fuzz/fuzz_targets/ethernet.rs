//! Fuzz target: see `mongate_dataplane::wire::fuzz::fuzz_ethernet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_dataplane::wire::fuzz::fuzz_ethernet(data);
});
