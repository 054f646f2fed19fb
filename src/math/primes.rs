//! Primality, NTT-friendly prime search and primitive roots of unity.

use super::modulus::{Modulus, MAX_MODULUS};

/// Deterministic Miller-Rabin for every `u32` (bases 2, 7, 61 suffice).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u32, 3, 5, 7, 11, 13, 61] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mul = |a: u64, b: u64| a * b % u64::from(n);
    let pow = |mut a: u64, mut e: u32| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, a);
            }
            a = mul(a, a);
            e >>= 1;
        }
        r
    };
    let minus_one = u64::from(n) - 1;
    let (mut d, mut s) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    'witness: for a in [2u32, 7, 61] {
        let mut x = pow(u64::from(a), d);
        if x == 1 || x == minus_one {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == minus_one {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// The prime `q = 1 mod two_n`, `q < 2^31`, nearest to `target` and not in
/// `used`; ties go to the smaller candidate. `None` when the range is exhausted.
pub fn ntt_prime_near(target: f64, two_n: u64, used: &[u32]) -> Option<u32> {
    let limit = u64::from(MAX_MODULUS);
    let k_max = (limit - 2) / two_n;
    let k0 = (((target - 1.0) / two_n as f64).round().max(1.0) as u64).min(k_max);
    let candidate = |k: u64| -> Option<u32> {
        let q = k.checked_mul(two_n)?.checked_add(1)?;
        (q < limit && q > two_n).then_some(q as u32)
    };
    let ok = |q: u32| is_prime(q) && !used.contains(&q);
    for step in 0..=k_max {
        let below = k0.checked_sub(step).and_then(candidate);
        let above = candidate(k0 + step);
        // Prefer whichever candidate is closer to the target.
        let mut pair = [below, above];
        if let (Some(b), Some(a)) = (below, above) {
            if (f64::from(a) - target).abs() < (target - f64::from(b)).abs() {
                pair = [above, below];
            }
        }
        if let Some(q) = pair.into_iter().flatten().find(|&q| ok(q)) {
            return Some(q);
        }
    }
    None
}

/// Distinct prime factors of `n` by trial division (`n < 2^32`).
fn prime_factors(mut n: u32) -> Vec<u32> {
    let mut factors = Vec::new();
    let mut p = 2u32;
    while u64::from(p) * u64::from(p) <= u64::from(n) {
        if n.is_multiple_of(p) {
            factors.push(p);
            while n.is_multiple_of(p) {
                n /= p;
            }
        }
        p += 1;
    }
    if n > 1 {
        factors.push(n);
    }
    factors
}

/// A primitive `order`-th root of unity modulo the prime `q` (`order` divides
/// `q - 1`): the smallest generator raised to `(q - 1) / order`. Deterministic, so every backend derives the same
/// tables.
pub fn primitive_root_of_unity(q: u32, order: u64) -> Option<u32> {
    if order == 0 || (u64::from(q) - 1) % order != 0 {
        return None;
    }
    let m = Modulus::new(q);
    let factors = prime_factors(q - 1);
    let generator = (2..q).find(|&g| factors.iter().all(|&f| m.pow(g, u64::from((q - 1) / f)) != 1))?;
    Some(m.pow(generator, (u64::from(q) - 1) / order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    #[test]
    fn primality_agrees_with_trial_division() {
        let trial = |n: u32| n >= 2 && (2..).take_while(|d: &u32| d * d <= n).all(|d| !n.is_multiple_of(d));
        for n in 0..20_000 {
            assert_eq!(is_prime(n), trial(n), "n = {n}");
        }
        for n in [2_147_483_647u32, 2_147_483_629, 1_073_741_789, 4_294_967_291] {
            assert!(is_prime(n), "{n}");
        }
        // Strong pseudoprimes to some bases.
        for n in [2_047u32, 1_373_653, 25_326_001, 3_215_031_751] {
            assert!(!is_prime(n), "{n}");
        }
    }

    #[test]
    fn prime_search_finds_ntt_friendly_primes() {
        for log_n in [10u32, 14, 17] {
            let two_n = 2u64 << log_n;
            let mut used = Vec::new();
            for _ in 0..5 {
                let q = ntt_prime_near(f64::from(1u32 << 30), two_n, &used).unwrap();
                assert!(is_prime(q));
                assert_eq!(u64::from(q) % two_n, 1);
                used.push(q);
            }
            let top = ntt_prime_near(f64::from(u32::MAX), two_n, &[]).unwrap();
            assert!(top < 1 << 31 && top > 1 << 30);
        }
    }

    #[test]
    fn roots_of_unity_have_exact_order() {
        let two_n = 1u64 << 15;
        let q = ntt_prime_near(f64::from(1u32 << 30), two_n, &[]).unwrap();
        let psi = primitive_root_of_unity(q, two_n).unwrap();
        let big = |x: u64| BigUint::from(x);
        assert_eq!(big(u64::from(psi)).modpow(&big(two_n), &big(u64::from(q))), big(1));
        assert_eq!(
            big(u64::from(psi)).modpow(&big(two_n / 2), &big(u64::from(q))),
            big(u64::from(q) - 1)
        );
    }
}
