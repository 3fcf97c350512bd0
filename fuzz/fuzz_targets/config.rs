//! `cargo fuzz run config`: libFuzzer entry point for [`conveyor_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::config(data));
