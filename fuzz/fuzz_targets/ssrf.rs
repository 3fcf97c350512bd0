//! `cargo fuzz run ssrf`: libFuzzer entry point for [`conveyor_fuzz::ssrf`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::ssrf(data));
