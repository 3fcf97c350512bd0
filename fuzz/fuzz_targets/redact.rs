//! `cargo fuzz run redact`: libFuzzer entry point for [`conveyor_fuzz::redact`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::redact(data));
