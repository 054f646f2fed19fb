//! Seeds for random tests: `$LATENT_HE_TEST_SEED` when set, else a fresh
//! one; printed either way, so that a failing run can be replayed with
//! `LATENT_HE_TEST_SEED=<seed> cargo test ...`. Shared by the integration
//! tests (`tests/common`) and the unit tests inside `src/`.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Environment variable fixing the seed of every random test.
pub const SEED_ENV: &str = "LATENT_HE_TEST_SEED";

/// The seed of a random test, printed as `seed N` (shown by the harness when
/// the test fails). Panics when `$LATENT_HE_TEST_SEED` is set but is not a
/// `u64`.
pub fn seed() -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not an unsigned 64-bit integer")),
        Err(_) => rand::random(),
    };
    println!("seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// A ChaCha20 generator from [`seed`].
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed())
}
