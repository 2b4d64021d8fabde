//! Fuzz target: see `qss_relay::fuzzing::check_block` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qss_relay::fuzzing::check_block(data);
});
