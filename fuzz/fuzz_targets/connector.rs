//! `cargo fuzz run connector`: libFuzzer entry point for [`conveyor_fuzz::connector`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::connector(data));
