//! `cargo fuzz run discord_interaction`: libFuzzer entry point for [`conveyor_fuzz::discord_interaction`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::discord_interaction(data));
