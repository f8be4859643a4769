//! Fuzz target: see `mongate_dataplane::fuzz::fuzz_ring_msg`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_dataplane::fuzz::fuzz_ring_msg(data);
});
