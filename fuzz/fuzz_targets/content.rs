//! Fuzz target: see `qss_relay::fuzzing::check_content` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qss_relay::fuzzing::check_content(data);
});
