//! Fuzz target: see `qss_relay::fuzzing::check_frame` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qss_relay::fuzzing::check_frame(data);
});
