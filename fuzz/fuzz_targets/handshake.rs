//! Fuzz target: see `mongate_control::secure::messages::fuzz_handshake`
//! (the handshake messages; enabled in `Cargo.toml` once that module is on main).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mongate_control::secure::messages::fuzz_handshake(data);
});
