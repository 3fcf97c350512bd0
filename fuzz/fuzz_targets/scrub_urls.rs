//! `cargo fuzz run scrub_urls`: libFuzzer entry point for [`conveyor_fuzz::scrub_urls`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::scrub_urls(data));
