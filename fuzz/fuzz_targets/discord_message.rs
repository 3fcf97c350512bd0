//! `cargo fuzz run discord_message`: libFuzzer entry point for [`conveyor_fuzz::discord_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::discord_message(data));
