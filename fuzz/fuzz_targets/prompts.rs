//! `cargo fuzz run prompts`: libFuzzer entry point for [`conveyor_fuzz::prompts`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::prompts(data));
