//! `cargo fuzz run workflow`: libFuzzer entry point for [`conveyor_fuzz::workflow`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::workflow(data));
