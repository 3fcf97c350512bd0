//! `cargo fuzz run render_split`: libFuzzer entry point for [`conveyor_fuzz::render_split`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::render_split(data));
