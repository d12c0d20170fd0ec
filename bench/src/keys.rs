//! Deterministic keys and values: key `i` of a seed is always the same 24
//! random-looking bytes, so nothing is kept in memory and checks regenerate
//! what was written.

pub const KEY_LEN: usize = 24;
pub const VALUE_LEN: usize = 150;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fill(seed: u64, stream: u64, i: u64, out: &mut [u8]) {
    let mut st =
        seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ stream.rotate_left(32) ^ i.wrapping_mul(0xA24B_AED4_963E_E407);
    // Mix the start state once so that neighbouring indices diverge.
    st = splitmix64(&mut st);
    for chunk in out.chunks_mut(8) {
        let x = splitmix64(&mut st).to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
}

/// Key number `i` of `seed`.
pub fn key(seed: u64, i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    fill(seed, 1, i, &mut k);
    k
}

/// The value written under key number `i` of `seed`.
pub fn value(seed: u64, i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    fill(seed, 2, i, &mut v);
    v
}

/// xorshift64*: the random choices of the read workloads, from a fixed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut s = seed;
        Rng(splitmix64(&mut s) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform enough in 0..n for n much smaller than 2^64.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
