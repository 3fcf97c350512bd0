//! `cargo fuzz run slack_mention`: libFuzzer entry point for [`conveyor_fuzz::slack_mention`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::slack_mention(data));
