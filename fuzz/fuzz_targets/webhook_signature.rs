//! Fuzz target: see `qss_relay::fuzzing::check_signature` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qss_relay::fuzzing::check_signature(data);
});
