//! Fuzz target: see `mongate_control::secure::messages::fuzz_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_control::secure::messages::fuzz_handshake(data);
});
