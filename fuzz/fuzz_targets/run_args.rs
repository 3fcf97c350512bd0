//! `cargo fuzz run run_args`: libFuzzer entry point for [`conveyor_fuzz::run_args`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::run_args(data));
