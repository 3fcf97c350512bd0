//! `cargo fuzz run telegram_mention`: libFuzzer entry point for [`conveyor_fuzz::telegram_mention`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::telegram_mention(data));
