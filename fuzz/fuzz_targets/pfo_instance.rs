//! Fuzz target: see `mongate_control::fuzz::fuzz_pfo_instance`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_control::fuzz::fuzz_pfo_instance(data);
});
