//! Fuzz target `crash_ops`: a structured workload (several transactions,
//! a crash point, a fault kind) encoded into the byte form that
//! `ariesdb::fuzzing::crash_ops` reads, which `cargo test --test fuzz_corpus`
//! also runs over the corpus on stable Rust.
#![no_main]

use arbitrary::Arbitrary;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    crash_after_calls: u16,
    power_loss: bool,
    /// (operation, key): the operation's lane is op % 3, its kind (op / 3) % 6.
    ops: Vec<(u8, u8)>,
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let mut bytes = Vec::with_capacity(11 + 2 * input.ops.len());
    bytes.extend_from_slice(&input.seed.to_le_bytes());
    bytes.extend_from_slice(&input.crash_after_calls.to_le_bytes());
    bytes.push(if input.power_loss { 0 } else { 1 });
    for (op, key) in input.ops.iter().take(400) {
        bytes.push(*op);
        bytes.push(*key);
    }
    ariesdb::fuzzing::crash_ops(&bytes);
});
