//! `cargo fuzz run webhook`: libFuzzer entry point for [`conveyor_fuzz::webhook`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::webhook(data));
