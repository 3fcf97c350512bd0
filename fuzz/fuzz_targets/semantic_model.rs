//! `cargo fuzz run semantic_model`: libFuzzer entry point for [`conveyor_fuzz::semantic_model`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::semantic_model(data));
