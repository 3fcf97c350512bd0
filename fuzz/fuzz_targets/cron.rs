//! `cargo fuzz run cron`: libFuzzer entry point for [`conveyor_fuzz::cron`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::cron(data));
