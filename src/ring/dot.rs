//! The limb kernel behind the plaintext-product sums and the key-switching
//! inner product: two dot products that share one operand, with the
//! products summed lazily in `u64` and reduced in 32-bit lanes.

use crate::math::modulus::LAZY_PRODUCTS;
use crate::math::Modulus;

/// Coefficients per block: the two blocks of `u64` sums (16 KiB) and a
/// gathered block of the shared operand stay in the L1 cache while every
/// term streams through.
const DOT_BLOCK: usize = 1024;

/// One term of [`paired_dot_limb`]: `(x_t, y_t, w_t)`, one limb each.
pub type DotTerm<'a> = (&'a [u32], &'a [u32], &'a [u32]);

/// `out_x += sum_t x_t * w_t` and `out_y += sum_t y_t * w_t` point-wise
/// modulo `m`, with `w_t` read through `perm` (`w_t[perm[k]]` at position
/// `k`, an automorphism in evaluation form) if given. Each `w_t` is read
/// once for both sums; [`LAZY_PRODUCTS`] products are summed in `u64`
/// before one reduction. The words equal those of the products reduced and
/// added one at a time (modular sums are exact).
///
/// Invariant (the caller's): every slice is canonical modulo `m` and as
/// long as `out_x`, `out_y` and `perm`.
pub fn paired_dot_limb(m: &Modulus, terms: &[DotTerm], perm: Option<&[u32]>, out_x: &mut [u32], out_y: &mut [u32]) {
    let n = out_x.len();
    debug_assert_eq!(out_y.len(), n);
    let mut lazy_x = [0u64; DOT_BLOCK];
    let mut lazy_y = [0u64; DOT_BLOCK];
    let mut gathered = [0u32; DOT_BLOCK];
    for start in (0..n).step_by(DOT_BLOCK) {
        let block = start..(start + DOT_BLOCK).min(n);
        let len = block.len();
        for chunk in terms.chunks(LAZY_PRODUCTS) {
            lazy_x[..len].fill(0);
            lazy_y[..len].fill(0);
            for &(x, y, w) in chunk {
                let w: &[u32] = match perm {
                    Some(p) => {
                        for (g, &k) in gathered.iter_mut().zip(&p[block.clone()]) {
                            *g = w[k as usize];
                        }
                        &gathered[..len]
                    }
                    None => &w[block.clone()],
                };
                for (((lx, ly), (&a, &b)), &v) in lazy_x
                    .iter_mut()
                    .zip(lazy_y.iter_mut())
                    .zip(x[block.clone()].iter().zip(&y[block.clone()]))
                    .zip(w)
                {
                    *lx += u64::from(a) * u64::from(v);
                    *ly += u64::from(b) * u64::from(v);
                }
            }
            for (o, &l) in out_x[block.clone()].iter_mut().zip(&lazy_x[..len]) {
                *o = m.add(*o, m.reduce_u64_lanes(l));
            }
            for (o, &l) in out_y[block.clone()].iter_mut().zip(&lazy_y[..len]) {
                *o = m.add(*o, m.reduce_u64_lanes(l));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Against u128 arithmetic, with and without a permutation, for term
    /// counts around the lazy chunk and a limb longer than one block.
    #[test]
    fn paired_dots_match_u128() {
        let mut rng = crate::test_seed::rng();
        let q = 2_147_352_577u32;
        let m = Modulus::new(q);
        let n = 2 * DOT_BLOCK + 40;
        let mut random = |len: usize| -> Vec<u32> { (0..len).map(|_| rng.gen_range(0..q)).collect() };
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.reverse();
        perm.swap(3, 700);
        for count in [1, 4, 5, 9] {
            let operands: Vec<[Vec<u32>; 3]> = (0..count).map(|_| [random(n), random(n), random(n)]).collect();
            let terms: Vec<DotTerm> = operands.iter().map(|[x, y, w]| (&x[..], &y[..], &w[..])).collect();
            for p in [None, Some(&perm[..])] {
                let (start_x, start_y) = (random(n), random(n));
                let (mut out_x, mut out_y) = (start_x.clone(), start_y.clone());
                paired_dot_limb(&m, &terms, p, &mut out_x, &mut out_y);
                for k in 0..n {
                    let at = p.map_or(k, |p| p[k] as usize);
                    let sum = |start: u32, pick: fn(&[Vec<u32>; 3]) -> &Vec<u32>| {
                        operands.iter().fold(u128::from(start), |s, o| {
                            (s + u128::from(pick(o)[k]) * u128::from(o[2][at])) % u128::from(q)
                        })
                    };
                    assert_eq!(
                        u128::from(out_x[k]),
                        sum(start_x[k], |o| &o[0]),
                        "x, {count} terms, k {k}"
                    );
                    assert_eq!(
                        u128::from(out_y[k]),
                        sum(start_y[k], |o| &o[1]),
                        "y, {count} terms, k {k}"
                    );
                }
            }
        }
    }
}
