//! Fuzz target `recover`: the body is `ariesdb::fuzzing::recover`, which
//! `cargo test --test fuzz_corpus` also runs over the corpus on stable Rust.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ariesdb::fuzzing::recover(data));
