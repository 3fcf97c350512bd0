//! `cargo fuzz run document`: libFuzzer entry point for [`conveyor_fuzz::document`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::document(data));
