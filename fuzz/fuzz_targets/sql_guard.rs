//! `cargo fuzz run sql_guard`: libFuzzer entry point for [`conveyor_fuzz::sql_guard`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::sql_guard(data));
