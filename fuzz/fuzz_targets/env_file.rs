//! Fuzz target: see `qss_relay::fuzzing::check_env_file` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qss_relay::fuzzing::check_env_file(data);
});
