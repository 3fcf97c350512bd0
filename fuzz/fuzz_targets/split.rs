//! `cargo fuzz run split`: libFuzzer entry point for [`conveyor_fuzz::split`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::split(data));
