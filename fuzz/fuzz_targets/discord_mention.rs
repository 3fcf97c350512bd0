//! `cargo fuzz run discord_mention`: libFuzzer entry point for [`conveyor_fuzz::discord_mention`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::discord_mention(data));
