//! `cargo fuzz run verify`: libFuzzer entry point for [`conveyor_fuzz::verify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::verify(data));
