//! `cargo fuzz run slack_interaction`: libFuzzer entry point for [`conveyor_fuzz::slack_interaction`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::slack_interaction(data));
