//! `cargo fuzz run telegram_update`: libFuzzer entry point for [`conveyor_fuzz::telegram_update`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::telegram_update(data));
