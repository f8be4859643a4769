//! Fuzz target: see `mongate_dataplane::fuzz::fuzz_capture_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_dataplane::fuzz::fuzz_capture_frame(data);
});
