//! Fuzz target: see `mongate_dataplane::fuzz::fuzz_plan_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_dataplane::fuzz::fuzz_plan_file(data);
});
