//! `cargo fuzz run bi_question`: libFuzzer entry point for [`conveyor_fuzz::bi_question`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conveyor_fuzz::bi_question(data));
