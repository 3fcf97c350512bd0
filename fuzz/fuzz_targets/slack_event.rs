//! `cargo fuzz run slack_event`: libFuzzer entry point for [`conveyor_fuzz::slack_event`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::slack_event(data));
