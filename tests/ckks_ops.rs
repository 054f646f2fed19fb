//! Every CKKS operation against the same computation on plaintext f64
//! vectors, with a stated precision bound (bits = -log2 of the largest error).

mod common;

use latent_he::ckks::{
    decrypt, encode, encrypt, encrypt_values, CkksError, Evaluator, Params, PublicKeySet, SecretKey,
};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

/// Bounds from the noise analysis in docs/precision.md (scale 2^30, N = 2^16,
/// uniform ternary secret): about 2^-16 of rounding noise per rescale.
/// Worst slot of 2048 or 32768 fluctuates by about half a bit between runs,
/// so bounds sit a bit or more under the typical value.
/// insecure-n12 (scale 2^30): fresh noise and one rescale stay near 2^-18
/// worst case; a key switch adds about as much again; three composed
/// rotations three times that.
const N12_BITS: f64 = 16.0;
const N12_KEYSWITCH_BITS: f64 = 15.0;
const N12_COMPOSED_BITS: f64 = 14.0;
const MUL_MEAN_BITS: f64 = 15.0;
const MUL_WORST_BITS: f64 = 12.0;
const CHAIN_MEAN_BITS: f64 = 12.0;
const CHAIN_WORST_BITS: f64 = 9.0;

struct Fixture {
    params: Arc<Params>,
    sk: SecretKey,
    eval: Evaluator,
    rng: ChaCha20Rng,
}

fn fixture(preset: &str, rotations: &[i64]) -> Fixture {
    let params = Params::preset(preset).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, rotations));
    Fixture {
        params,
        sk,
        eval: Evaluator::new(keys),
        rng: common::rng(),
    }
}

impl Fixture {
    fn random(&mut self) -> Vec<f64> {
        (0..self.params.slots())
            .map(|_| self.rng.gen_range(-1.0..1.0))
            .collect()
    }
}

/// Worst-case precision: -log2 of the largest error over all slots.
fn precision_bits(got: &[f64], want: &[f64]) -> f64 {
    let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    -err.max(f64::MIN_POSITIVE).log2()
}

/// Average precision: -log2 of the mean error over all slots.
fn mean_precision_bits(got: &[f64], want: &[f64]) -> f64 {
    let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).sum::<f64>() / got.len() as f64;
    -err.max(f64::MIN_POSITIVE).log2()
}

fn rotate_left(v: &[f64], steps: i64) -> Vec<f64> {
    let n = v.len() as i64;
    (0..n).map(|i| v[(i + steps).rem_euclid(n) as usize]).collect()
}

#[test]
fn encrypt_decrypt_add_sub_neg() {
    let mut f = fixture("insecure-n12", &[]);
    let (x, y) = (f.random(), f.random());
    let keys = f.eval.keys().clone();
    let (cx, cy) = (encrypt_values(&keys, &x).unwrap(), encrypt_values(&keys, &y).unwrap());
    assert!(precision_bits(&decrypt(&f.sk, &cx).unwrap(), &x) > N12_BITS);
    let sum: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    let diff: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
    let neg: Vec<f64> = x.iter().map(|a| -a).collect();
    assert!(precision_bits(&decrypt(&f.sk, &f.eval.add(&cx, &cy).unwrap()).unwrap(), &sum) > N12_BITS);
    assert!(precision_bits(&decrypt(&f.sk, &f.eval.sub(&cx, &cy).unwrap()).unwrap(), &diff) > N12_BITS);
    assert!(precision_bits(&decrypt(&f.sk, &f.eval.neg(&cx).unwrap()).unwrap(), &neg) > N12_BITS);
}

#[test]
fn plaintext_and_constant_operations() {
    let mut f = fixture("insecure-n12", &[]);
    let (x, w) = (f.random(), f.random());
    let keys = f.eval.keys().clone();
    let cx = encrypt_values(&keys, &x).unwrap();
    let level = cx.level();

    let pw = encode(&f.params, &w, level, f.params.mul_plain_scale(level, cx.scale())).unwrap();
    let mut prod = f.eval.mul_plain(&cx, &pw).unwrap();
    f.eval.rescale_assign(&mut prod).unwrap();
    assert_eq!(prod.scale(), f.params.scale(level - 1), "lands on the canonical scale");
    let want: Vec<f64> = x.iter().zip(&w).map(|(a, b)| a * b).collect();
    assert!(precision_bits(&decrypt(&f.sk, &prod).unwrap(), &want) > N12_BITS);

    let pa = encode(&f.params, &w, level, cx.scale()).unwrap();
    let mut sum = cx.clone();
    f.eval.add_plain_assign(&mut sum, &pa).unwrap();
    let want: Vec<f64> = x.iter().zip(&w).map(|(a, b)| a + b).collect();
    assert!(precision_bits(&decrypt(&f.sk, &sum).unwrap(), &want) > N12_BITS);

    let mut c = cx.clone();
    f.eval.mul_const_assign(&mut c, -0.375).unwrap();
    f.eval.rescale_assign(&mut c).unwrap();
    f.eval.add_const_assign(&mut c, 0.25).unwrap();
    let want: Vec<f64> = x.iter().map(|a| a * -0.375 + 0.25).collect();
    assert!(precision_bits(&decrypt(&f.sk, &c).unwrap(), &want) > N12_BITS);
}

#[test]
fn rotations_single_hoisted_and_composed() {
    let steps = [1i64, 2, -3, 5, 100, -1];
    let mut f = fixture("insecure-n12", &steps);
    let x = f.random();
    let keys = f.eval.keys().clone();
    let cx = encrypt_values(&keys, &x).unwrap();
    let hoisted = f.eval.rotate_hoisted(&cx, &steps).unwrap();
    for (&s, h) in steps.iter().zip(&hoisted) {
        let single = f.eval.rotate(&cx, s).unwrap();
        assert_eq!(&single, h, "hoisted and single rotation agree word for word");
        assert!(
            precision_bits(&decrypt(&f.sk, h).unwrap(), &rotate_left(&x, s)) > N12_KEYSWITCH_BITS,
            "step {s}"
        );
    }
    // Composition: (((x << 1) << 2) >> 3) = x, and (x << 5) << 100 = x << 105.
    let c = f
        .eval
        .rotate(&f.eval.rotate(&f.eval.rotate(&cx, 1).unwrap(), 2).unwrap(), -3)
        .unwrap();
    assert!(precision_bits(&decrypt(&f.sk, &c).unwrap(), &x) > N12_COMPOSED_BITS);
    let c = f.eval.rotate(&f.eval.rotate(&cx, 5).unwrap(), 100).unwrap();
    assert!(precision_bits(&decrypt(&f.sk, &c).unwrap(), &rotate_left(&x, 105)) > N12_COMPOSED_BITS);
    // Rotation at a lower level uses the same keys.
    let mut low = cx.clone();
    f.eval.drop_level_assign(&mut low, 2).unwrap();
    let r = f.eval.rotate(&low, -1).unwrap();
    assert_eq!(r.level(), 2);
    assert!(precision_bits(&decrypt(&f.sk, &r).unwrap(), &rotate_left(&x, -1)) > N12_COMPOSED_BITS);
    assert!(matches!(
        f.eval.rotate(&cx, 7),
        Err(CkksError::MissingRotationKey { steps: 7 })
    ));
}

/// The one-pass sum of plaintext products gives the words of the products
/// added one after another (nine terms: two lazy chunks and a partial one),
/// decrypts to the f64 dot product, and refuses no terms or mixed scales.
#[test]
fn sums_of_plaintext_products_equal_the_fold() {
    let mut f = fixture("insecure-n12", &[]);
    let keys = f.eval.keys().clone();
    let level = f.params.max_level();
    let xs: Vec<Vec<f64>> = (0..9).map(|_| f.random()).collect();
    let ws: Vec<Vec<f64>> = (0..9).map(|_| f.random()).collect();
    let cts: Vec<_> = xs.iter().map(|x| encrypt_values(&keys, x).unwrap()).collect();
    let pt_scale = f.params.mul_plain_scale(level, cts[0].scale());
    let pts: Vec<_> = ws
        .iter()
        .map(|w| encode(&f.params, w, level, pt_scale).unwrap())
        .collect();
    let terms: Vec<_> = cts.iter().zip(&pts).collect();
    let sum = f.eval.mul_plain_sum(&terms).unwrap();
    let mut fold = f.eval.mul_plain(&cts[0], &pts[0]).unwrap();
    for (ct, pt) in &terms[1..] {
        f.eval.mul_plain_add_assign(&mut fold, ct, pt).unwrap();
    }
    assert_eq!(sum, fold, "word for word");
    let want: Vec<f64> = (0..f.params.slots())
        .map(|k| xs.iter().zip(&ws).map(|(x, w)| x[k] * w[k]).sum())
        .collect();
    let got = decrypt(&f.sk, &f.eval.rescale(&sum).unwrap()).unwrap();
    assert!(precision_bits(&got, &want) > N12_COMPOSED_BITS);

    assert!(matches!(f.eval.mul_plain_sum(&[]), Err(CkksError::Shape { .. })));
    let other_scale = encode(&f.params, &ws[0], level, pt_scale * 2.0).unwrap();
    assert!(matches!(
        f.eval.mul_plain_sum(&[(&cts[0], &pts[0]), (&cts[1], &other_scale)]),
        Err(CkksError::ScaleMismatch { .. })
    ));
}

/// A sum of rotations with one ModDown equals the sum of the rotated
/// vectors, agrees with separate rotations added up (to their noise), and
/// refuses terms at another level or scale.
#[test]
fn rotation_sums_divide_by_p_once() {
    let steps = [0i64, 3, -17, 256, 3];
    let mut f = fixture("insecure-n12", &steps);
    let keys = f.eval.keys().clone();
    let values: Vec<Vec<f64>> = steps.iter().map(|_| f.random()).collect();
    let cts: Vec<_> = values.iter().map(|v| encrypt_values(&keys, v).unwrap()).collect();
    let mut sum = None;
    let mut separate = None;
    for (ct, &s) in cts.iter().zip(&steps) {
        sum = Some(f.eval.rotation_sum_add(sum, ct, s).unwrap());
        let rotated = f.eval.rotate(ct, s).unwrap();
        separate = Some(match separate {
            None => rotated,
            Some(acc) => f.eval.add(&acc, &rotated).unwrap(),
        });
    }
    let lazy = f.eval.rotation_sum_finish(sum.unwrap());
    let separate = separate.unwrap();
    assert_eq!((lazy.level(), lazy.scale()), (separate.level(), separate.scale()));
    assert_ne!(lazy, separate, "one ModDown rounds differently from five");
    let mut want = vec![0.0; f.params.slots()];
    for (v, &s) in values.iter().zip(&steps) {
        for (w, r) in want.iter_mut().zip(rotate_left(v, s)) {
            *w += r;
        }
    }
    let lazy_bits = precision_bits(&decrypt(&f.sk, &lazy).unwrap(), &want);
    let separate_bits = precision_bits(&decrypt(&f.sk, &separate).unwrap(), &want);
    assert!(lazy_bits > N12_COMPOSED_BITS, "{lazy_bits} bits");
    assert!(lazy_bits > separate_bits - 1.0, "{lazy_bits} vs {separate_bits} bits");

    let mut low = cts[1].clone();
    f.eval.drop_level_assign(&mut low, 2).unwrap();
    let started = f.eval.rotation_sum_add(None, &cts[0], 3).unwrap();
    assert!(matches!(
        f.eval.rotation_sum_add(Some(started), &low, 3),
        Err(CkksError::LevelMismatch { .. })
    ));
    let squared = f.eval.mul_relin(&cts[1], &cts[1]).unwrap();
    let started = f.eval.rotation_sum_add(None, &cts[0], 3).unwrap();
    assert!(matches!(
        f.eval.rotation_sum_add(Some(started), &squared, 3),
        Err(CkksError::ScaleMismatch { .. })
    ));
    assert!(matches!(
        f.eval.rotation_sum_add(None, &cts[0], 7),
        Err(CkksError::MissingRotationKey { steps: 7 })
    ));
}

#[test]
fn mismatched_operands_are_refused() {
    let mut f = fixture("insecure-n12", &[]);
    let x = f.random();
    let keys = f.eval.keys().clone();
    let cx = encrypt_values(&keys, &x).unwrap();
    let mut low = cx.clone();
    f.eval.drop_level_assign(&mut low, 1).unwrap();
    assert!(matches!(f.eval.add(&cx, &low), Err(CkksError::LevelMismatch { .. })));
    let sq = f.eval.mul_relin(&cx, &cx).unwrap();
    assert!(matches!(f.eval.add(&cx, &sq), Err(CkksError::ScaleMismatch { .. })));
    let other = fixture("insecure-n12", &[]);
    let foreign = encrypt_values(other.eval.keys(), &x).unwrap();
    assert!(matches!(f.eval.add(&cx, &foreign), Err(CkksError::KeyMismatch { .. })));
    assert!(matches!(decrypt(&f.sk, &foreign), Err(CkksError::KeyMismatch { .. })));
    let mut bottom = cx.clone();
    f.eval.drop_level_assign(&mut bottom, 0).unwrap();
    assert!(matches!(f.eval.rescale(&bottom), Err(CkksError::OutOfLevels { .. })));
}

/// One multiply+relinearize+rescale at n16, and a chain of 30 ciphertext
/// multiplications, each followed by a rescale (values near 1 so that the
/// product neither vanishes nor overflows).
#[test]
fn n16_multiplication_precision_and_depth() {
    let mut f = fixture("n16", &[]);
    let keys = f.eval.keys().clone();
    let (x, y) = (f.random(), f.random());
    let (cx, cy) = (encrypt_values(&keys, &x).unwrap(), encrypt_values(&keys, &y).unwrap());
    let fresh = decrypt(&f.sk, &cx).unwrap();
    eprintln!(
        "n16 fresh encryption: {:.1} bits mean, {:.1} worst",
        mean_precision_bits(&fresh, &x),
        precision_bits(&fresh, &x)
    );
    let mut prod = f.eval.mul_relin(&cx, &cy).unwrap();
    f.eval.rescale_assign(&mut prod).unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let got = decrypt(&f.sk, &prod).unwrap();
    let (mean, worst) = (mean_precision_bits(&got, &want), precision_bits(&got, &want));
    eprintln!("n16 mul_relin_rescale: {mean:.1} bits mean, {worst:.1} worst");
    assert!(mean >= MUL_MEAN_BITS && worst >= MUL_WORST_BITS, "{mean} / {worst}");

    let draw = |rng: &mut ChaCha20Rng| -> Vec<f64> { (0..f.params.slots()).map(|_| rng.gen_range(0.9..1.1)).collect() };
    let mut want = draw(&mut f.rng);
    let mut c = encrypt_values(&keys, &want).unwrap();
    for _ in 0..30 {
        let v = draw(&mut f.rng);
        let level = c.level();
        let factor = encrypt(&keys, &encode(&f.params, &v, level, f.params.scale(level)).unwrap()).unwrap();
        // Both at the canonical scale of their level: the product rescales
        // onto the next level's canonical scale.
        assert_eq!(c.scale(), f.params.scale(level));
        c = f.eval.mul_relin(&c, &factor).unwrap();
        f.eval.rescale_assign(&mut c).unwrap();
        want.iter_mut().zip(&v).for_each(|(w, v)| *w *= v);
    }
    let got = decrypt(&f.sk, &c).unwrap();
    let (mean, worst) = (mean_precision_bits(&got, &want), precision_bits(&got, &want));
    eprintln!(
        "n16 after 30 multiplications (level {}): {mean:.1} bits mean, {worst:.1} worst",
        c.level()
    );
    assert!(mean >= CHAIN_MEAN_BITS && worst >= CHAIN_WORST_BITS, "{mean} / {worst}");
    assert_eq!(c.level(), f.params.max_level() - 30);
}

/// `value_bound` is `Q / (2 D)` of the level's primes (their product in
/// u128), and it is where decryption stops returning the slots: slots of one
/// sign (the worst case: their mean lands in one coefficient) just under the
/// bound come back, just over it every slot comes back wrong.
#[test]
fn slots_within_the_value_bound_return_and_past_it_wrap() {
    let mut f = fixture("insecure-n12", &[]);
    let params = f.params.clone();
    let q = params.primes_q();
    let exact = (u128::from(q[0]) * u128::from(q[1])) as f64 / 2.0 / params.scale(1);
    let bound = params.value_bound(1);
    assert!((bound / exact - 1.0).abs() < 1e-12, "{bound} vs {exact}");
    assert!(params.value_bound(2) > bound * 1e8, "each prime adds its size");
    let keys = f.eval.keys().clone();
    let sign = if f.rng.gen() { 1.0 } else { -1.0 };
    for (range, returns) in [(0.80..0.95, true), (1.05..1.20, false)] {
        let values: Vec<f64> = (0..params.slots())
            .map(|_| sign * bound * f.rng.gen_range(range.clone()))
            .collect();
        let ct = encrypt(&keys, &encode(&params, &values, 1, params.scale(1)).unwrap()).unwrap();
        let got = decrypt(&f.sk, &ct).unwrap();
        let worst = got
            .iter()
            .zip(&values)
            .map(|(g, v)| ((g - v) / bound).abs())
            .fold(0.0, f64::max);
        let best = got
            .iter()
            .zip(&values)
            .map(|(g, v)| ((g - v) / bound).abs())
            .fold(f64::INFINITY, f64::min);
        if returns {
            assert!(worst < 1e-6, "within the bound: off by {worst} of it");
        } else {
            assert!(best > 1.0, "past the bound: a slot came back within {best} of it");
        }
    }
}
