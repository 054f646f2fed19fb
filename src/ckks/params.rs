//! CKKS parameters: a literal anyone can write (JSON), validated into
//! [`Params`], which can only exist when valid; the named presets; the
//! 128-bit security check.

use super::error::CkksError;
use crate::math::embedding::Embedding;
use crate::math::primes::ntt_prime_near;
use crate::ring::basis::{BasisConverter, ModDown};
use crate::ring::{LimbLayout, RingContext};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest log2(QP) at 128-bit security for a uniform ternary secret, by
/// log2 N (HomomorphicEncryption.org standard, table 1; N = 2^10..2^17).
pub const SECURITY_128_MAX_LOG_QP: [(u32, u32); 8] = [
    (10, 27),
    (11, 54),
    (12, 109),
    (13, 218),
    (14, 438),
    (15, 881),
    (16, 1772),
    (17, 3576),
];

/// Smallest and largest supported log2 N.
pub const LOG_N_RANGE: std::ops::RangeInclusive<u32> = 10..=17;
/// Allowed prime sizes in bits (primes are below 2^31 for the u32 kernels).
pub const PRIME_BITS_RANGE: std::ops::RangeInclusive<u32> = 20..=31;
/// Most primes (`log_q` and `log_p` together) a parameter set may have:
/// more than any set within the 128-bit bound needs (at most 178 primes
/// of 20 bits at N = 2^17), so that a literal cannot ask for an unbounded
/// prime search and limb tables.
pub const MAX_PRIMES: usize = 256;

/// A parameter set as written by a user.
///
/// `log_q[0]` is the base prime (kept to the end, it holds the result);
/// `log_q[1..]` are the primes dropped by successive rescales. Primes whose
/// size equals `log_scale` rounded are chosen so that the scale returns to
/// about `2^log_scale` after every multiplication and rescale (see
/// [`Params`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsLiteral {
    /// log2 of the ring degree N.
    pub log_n: u32,
    /// Bit size of each ciphertext prime, base prime first.
    pub log_q: Vec<u32>,
    /// Bit size of each special (key-switching) prime.
    pub log_p: Vec<u32>,
    /// log2 of the encoding scale at the top level (fractional values
    /// allowed: a scale just under 2^31 keeps 31-bit primes below 2^31).
    pub log_scale: f64,
    /// Number of digits in hybrid key switching.
    pub dnum: usize,
}

/// Named presets. Every 128-bit one leaves the bound with some margin so that
/// the actual primes (within half a bit of their nominal size) stay under it.
pub const PRESETS: [&str; 6] = ["insecure-n12", "insecure-n12-deep", "n14", "n15", "n16", "n17"];

impl ParamsLiteral {
    /// The literal of a named preset.
    ///
    /// # Errors
    /// [`CkksError::UnknownPreset`] for any other name.
    pub fn preset(name: &str) -> Result<Self, CkksError> {
        // Every chain has a 31-bit base prime: after the last rescale the
        // result keeps about one bit above the scale, and the ciphertext is
        // usually left at level 1 or higher for headroom.
        let chain = |log_n: u32, levels: usize, special: usize, dnum: usize, primes: ChainPrimes| ParamsLiteral {
            log_n,
            log_q: std::iter::once(31)
                .chain(std::iter::repeat_n(primes.rescaled_bits, levels))
                .collect(),
            log_p: vec![primes.special_bits; special],
            log_scale: primes.log_scale,
            dnum,
        };
        Ok(match name {
            // Tests only: 2^12 with 8 levels is far over the 109-bit bound.
            "insecure-n12" => chain(12, 7, 2, 4, AT_2_30),
            // As many levels as n17 at N = 2^12: whole models in tests.
            "insecure-n12-deep" => chain(12, 90, 23, 4, AT_2_30),
            // 10 levels, 3 special primes, 4 digits: log QP about 424 <= 438.
            "n14" => chain(14, 10, 3, 4, AT_2_30),
            // 22 levels, 5 special primes, 5 digits: about 846 <= 881.
            "n15" => chain(15, 22, 5, 5, AT_2_30),
            // 43 levels (ResNet20 needs 31), 12 special, 4 digits: log QP
            // about 1720 <= 1772; a 44th level would need a 13th special
            // prime and cross the bound.
            "n16" => chain(16, 43, 12, 4, NEAR_2_31),
            // 90 levels (ResNet20 with SE needs 88), 24 special, 4 digits:
            // about 3532 <= 3576.
            "n17" => chain(17, 90, 24, 4, NEAR_2_31),
            _ => {
                return Err(CkksError::UnknownPreset {
                    name: name.to_string(),
                    available: PRESETS.join(", "),
                })
            }
        })
    }
}

/// The prime sizes and scale of a preset's chain.
#[derive(Clone, Copy)]
struct ChainPrimes {
    rescaled_bits: u32,
    special_bits: u32,
    log_scale: f64,
}

/// 30-bit rescaled primes at the scale 2^30, and special primes as large as
/// the u32 kernels allow, so that P exceeds each digit's modulus and key
/// switching adds little noise.
const AT_2_30: ChainPrimes = ChainPrimes {
    rescaled_bits: 30,
    special_bits: 31,
    log_scale: 30.0,
};

/// Rescaled primes just under 2^31 and the scale at 2^30.9 (the top of what
/// primes below 2^31, the u32 kernels' limit, allow), special primes of 30
/// bits. Every operation's rounding and every weight's encoding error
/// shrink by the scale: 1.87 times less noise than [`AT_2_30`] for the same
/// levels. P still exceeds a digit's modulus by 9 bits or more, which
/// leaves the key's own noise far below the rounding of ModDown.
const NEAR_2_31: ChainPrimes = ChainPrimes {
    rescaled_bits: 31,
    special_bits: 30,
    log_scale: 30.9,
};

/// A validated parameter set with its ring context and precomputed tables.
///
/// Invariants: the primes are distinct, NTT-friendly for N and below 2^31;
/// `len(P) >= ceil(len(Q) / dnum)`; unless `security_bits` is `None`,
/// log2(QP) is within the 128-bit bound. The canonical scale of level `l` is
/// `scales[l]`, with `scales[L] = 2^log_scale` and
/// `scales[l-1] = scales[l]^2 / q_l`: a product of two ciphertexts at their
/// level's scale, once rescaled, is exactly at the next level's scale.
#[derive(Debug)]
pub struct Params {
    literal: ParamsLiteral,
    name: Option<String>,
    ring: RingContext,
    embedding: Embedding,
    scales: Vec<f64>,
    alpha: usize,
    security_bits: Option<u32>,
    fingerprint: [u8; 16],
    mod_up: Vec<Vec<BasisConverter>>,
    mod_down: ModDown,
}

impl Params {
    /// Validates a literal. `allow_insecure` accepts sets over the 128-bit bound.
    ///
    /// # Errors
    /// [`CkksError::InvalidParams`] for malformed literals,
    /// [`CkksError::Insecure`] over the bound without `allow_insecure`.
    pub fn new(literal: ParamsLiteral, allow_insecure: bool) -> Result<Arc<Self>, CkksError> {
        Self::build(literal, None, allow_insecure)
    }

    /// A named preset; presets named `insecure-*` are accepted because they are
    /// asked for by name.
    ///
    /// # Errors
    /// [`CkksError::UnknownPreset`].
    pub fn preset(name: &str) -> Result<Arc<Self>, CkksError> {
        let literal = ParamsLiteral::preset(name)?;
        Self::build(literal, Some(name.to_string()), name.starts_with("insecure"))
    }

    fn build(literal: ParamsLiteral, name: Option<String>, allow_insecure: bool) -> Result<Arc<Self>, CkksError> {
        let invalid = |reason: String| CkksError::InvalidParams { reason };
        let l = &literal;
        if !LOG_N_RANGE.contains(&l.log_n) {
            return Err(invalid(format!(
                "log_n = {} is outside {}..={}",
                l.log_n,
                LOG_N_RANGE.start(),
                LOG_N_RANGE.end()
            )));
        }
        if l.log_q.is_empty() || l.log_p.is_empty() {
            return Err(invalid("log_q and log_p need at least one prime each".into()));
        }
        if let Some(b) = l.log_q.iter().chain(&l.log_p).find(|b| !PRIME_BITS_RANGE.contains(b)) {
            return Err(invalid(format!(
                "a {b}-bit prime is outside {}..={} bits",
                PRIME_BITS_RANGE.start(),
                PRIME_BITS_RANGE.end()
            )));
        }
        if l.dnum == 0 || l.dnum > l.log_q.len() {
            return Err(invalid(format!("dnum = {} must be in 1..={}", l.dnum, l.log_q.len())));
        }
        let alpha = l.log_q.len().div_ceil(l.dnum);
        if l.log_p.len() < alpha {
            return Err(invalid(format!(
                "dnum = {} splits {} primes into digits of {alpha}; that needs at least {alpha} special primes, got {}",
                l.dnum,
                l.log_q.len(),
                l.log_p.len()
            )));
        }
        let primes = l.log_q.len() + l.log_p.len();
        if primes > MAX_PRIMES {
            return Err(invalid(format!(
                "{primes} primes is more than the {MAX_PRIMES} accepted"
            )));
        }
        let bound = SECURITY_128_MAX_LOG_QP
            .iter()
            .find(|(ln, _)| *ln == l.log_n)
            .map(|&(_, b)| b)
            .expect("log_n checked above");
        // Every prime lies within half a bit of its declared size: a set
        // over the bound by its declared sizes is refused before any prime
        // is searched for.
        let least_log_qp = l.log_q.iter().chain(&l.log_p).map(|&b| f64::from(b) - 0.5).sum::<f64>();
        if least_log_qp > f64::from(bound) && !allow_insecure {
            return Err(CkksError::Insecure {
                log_qp: least_log_qp,
                bound,
                log_n: l.log_n,
            });
        }
        if !(10.0..=40.0).contains(&l.log_scale) {
            return Err(invalid(format!("log_scale = {} is outside 10..=40", l.log_scale)));
        }
        let scale_bits = l.log_scale.round() as u32;
        let n = 1usize << l.log_n;
        let two_n = 2 * n as u64;
        let exhausted = |bits: u32| invalid(format!("ran out of {bits}-bit primes that are 1 mod 2N"));
        // Special primes first, then the base prime, then the rescaling chain
        // from the top level down, each prime aimed at the value that brings
        // the scale back to 2^log_scale.
        let mut used = Vec::new();
        for &bits in &l.log_p {
            used.push(ntt_prime_near(2f64.powi(bits as i32), two_n, &used).ok_or_else(|| exhausted(bits))?);
        }
        let base = ntt_prime_near(2f64.powi(l.log_q[0] as i32), two_n, &used).ok_or_else(|| exhausted(l.log_q[0]))?;
        used.push(base);
        let top = l.log_q.len() - 1;
        let mut q = vec![0u32; l.log_q.len()];
        q[0] = base;
        let mut scales = vec![0f64; l.log_q.len()];
        scales[top] = 2f64.powf(l.log_scale);
        for level in (1..=top).rev() {
            let bits = l.log_q[level];
            let s = scales[level];
            let target = if bits == scale_bits {
                s * s / 2f64.powf(l.log_scale)
            } else {
                2f64.powi(bits as i32)
            };
            let prime = ntt_prime_near(target, two_n, &used).ok_or_else(|| exhausted(bits))?;
            if (f64::from(prime).log2() - f64::from(bits)).abs() > 0.5 {
                return Err(exhausted(bits));
            }
            used.push(prime);
            q[level] = prime;
            scales[level - 1] = s * s / f64::from(prime);
            // Primes not sized like the scale pull it away, and the drift
            // doubles at every level: refuse a chain whose scale leaves
            // 2^(log_scale +- 1) rather than encode at a vanishing scale.
            let drift = scales[level - 1].log2() - l.log_scale;
            if drift.abs() > 1.0 {
                return Err(invalid(format!(
                    "the canonical scale drifts to 2^{:.1} at level {} (log_scale {}): size the rescaled primes like the scale",
                    scales[level - 1].log2(),
                    level - 1,
                    l.log_scale
                )));
            }
        }
        let p = used[..l.log_p.len()].to_vec();
        let log_qp: f64 = q.iter().chain(&p).map(|&x| f64::from(x).log2()).sum();
        let secure = log_qp <= f64::from(bound);
        if !secure && !allow_insecure {
            return Err(CkksError::Insecure {
                log_qp,
                bound,
                log_n: l.log_n,
            });
        }
        let ring = RingContext::new(n, &q, &p).expect("primes are 1 mod 2N by construction");
        let fingerprint = fingerprint(&literal, &q, &p);
        // ModUp converters for digit j truncated to end at prime e - 1:
        // mod_up[j][e - start_j - 1].
        let mod_up = (0..l.dnum)
            .map(|j| {
                let start = j * alpha;
                let end = ((j + 1) * alpha).min(q.len());
                (start + 1..=end)
                    .map(|e| BasisConverter::new(&ring, (start..e).collect()))
                    .collect()
            })
            .collect();
        let mod_down = ModDown::new(&ring);
        Ok(Arc::new(Self {
            embedding: Embedding::new(n),
            name,
            ring,
            scales,
            alpha,
            security_bits: secure.then_some(128),
            fingerprint,
            mod_up,
            mod_down,
            literal,
        }))
    }

    /// The literal this set was built from.
    pub fn literal(&self) -> &ParamsLiteral {
        &self.literal
    }

    /// The preset name, if built from one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The ring context (primes and NTT tables).
    pub fn ring(&self) -> &RingContext {
        &self.ring
    }

    /// The canonical-embedding tables.
    pub fn embedding(&self) -> &Embedding {
        &self.embedding
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        self.ring.n()
    }

    /// Number of slots, N/2.
    pub fn slots(&self) -> usize {
        self.ring.n() / 2
    }

    /// Highest level (number of ciphertext primes - 1).
    pub fn max_level(&self) -> usize {
        self.ring.q_count() - 1
    }

    /// Canonical scale of `level`.
    pub fn scale(&self, level: usize) -> f64 {
        self.scales[level]
    }

    /// The largest slot magnitude a ciphertext at `level` (at most
    /// [`Self::max_level`]) holds at the level's canonical scale `D` without
    /// a coefficient leaving `(-Q/2, Q/2)`, `Q` the product of the level's
    /// primes: `Q / (2 D)`. Each coefficient of an encoding is an average of
    /// the `N` slot values (with their conjugates) times roots of unity,
    /// times `D`, so slots within this bound keep every coefficient within
    /// `Q/2`; past it a coefficient can wrap, and a wrapped coefficient
    /// changes every slot of the ciphertext on decryption.
    pub fn value_bound(&self, level: usize) -> f64 {
        let log_q: f64 = self.primes_q()[..=level].iter().map(|&q| f64::from(q).log2()).sum();
        (log_q - 1.0 - self.scale(level).log2()).exp2()
    }

    /// Ciphertext primes.
    pub fn primes_q(&self) -> Vec<u32> {
        (0..self.ring.q_count()).map(|i| self.ring.q(i).value()).collect()
    }

    /// Special primes.
    pub fn primes_p(&self) -> Vec<u32> {
        (0..self.ring.p_count()).map(|i| self.ring.p(i).value()).collect()
    }

    /// log2 of QP, from the actual primes.
    pub fn log_qp(&self) -> f64 {
        self.primes_q()
            .iter()
            .chain(&self.primes_p())
            .map(|&x| f64::from(x).log2())
            .sum()
    }

    /// Number of key-switching digits.
    pub fn dnum(&self) -> usize {
        self.literal.dnum
    }

    /// Primes per digit.
    pub fn alpha(&self) -> usize {
        self.alpha
    }

    /// 128 for sets within the standard's bound, `None` otherwise.
    pub fn security_bits(&self) -> Option<u32> {
        self.security_bits
    }

    /// A 16-byte digest of the primes, scale and digit split; files record it.
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    /// The fingerprint as hex.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }

    /// Checks `level <= max_level`.
    ///
    /// # Errors
    /// [`CkksError::InvalidLevel`].
    pub fn check_level(&self, level: usize) -> Result<(), CkksError> {
        if level > self.max_level() {
            Err(CkksError::InvalidLevel {
                level,
                max: self.max_level(),
            })
        } else {
            Ok(())
        }
    }

    /// The layout of a ciphertext polynomial at `level`.
    pub fn layout(&self, level: usize) -> LimbLayout {
        LimbLayout::q_only(level + 1)
    }

    /// The layout of an extended polynomial at `level` (`Q_l ++ P`).
    pub fn extended_layout(&self, level: usize) -> LimbLayout {
        LimbLayout {
            q: level + 1,
            p: self.ring.p_count(),
        }
    }

    /// The ciphertext-prime ranges of the key-switching digits at `level`.
    pub fn digits(&self, level: usize) -> Vec<std::ops::Range<usize>> {
        (0..self.dnum())
            .map(|j| j * self.alpha..((j + 1) * self.alpha).min(level + 1))
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// The ModUp converter for a digit's prime range (from [`Self::digits`]).
    pub fn mod_up(&self, digit: &std::ops::Range<usize>) -> &BasisConverter {
        let j = digit.start / self.alpha;
        &self.mod_up[j][digit.end - digit.start - 1]
    }

    /// The ModDown tables.
    pub fn mod_down(&self) -> &ModDown {
        &self.mod_down
    }

    /// The scale at which to encode a plaintext multiplied into a ciphertext
    /// of scale `ct_scale` at `level`, so that after the rescale the product
    /// sits exactly at the canonical scale of `level - 1`.
    pub fn mul_plain_scale(&self, level: usize, ct_scale: f64) -> f64 {
        self.mul_plain_scale_over(level, ct_scale, 1)
    }

    /// [`Self::mul_plain_scale`] for a product followed by `rescales`
    /// rescales: it lands exactly on the canonical scale of `level -
    /// rescales`. Two rescales serve a ciphertext that still carries its
    /// last product's scale (one rescale pending).
    pub fn mul_plain_scale_over(&self, level: usize, ct_scale: f64, rescales: usize) -> f64 {
        debug_assert!(level >= rescales && rescales >= 1);
        let primes: f64 = (0..rescales)
            .map(|k| f64::from(self.ring.q(level - k).value()))
            .product();
        self.scales[level - rescales] * primes / ct_scale
    }
}

fn fingerprint(literal: &ParamsLiteral, q: &[u32], p: &[u32]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"latent-he params v1");
    h.update(&literal.log_n.to_le_bytes());
    h.update(&literal.log_scale.to_le_bytes());
    h.update(&(literal.dnum as u64).to_le_bytes());
    for list in [q, p] {
        h.update(&(list.len() as u64).to_le_bytes());
        for x in list {
            h.update(&x.to_le_bytes());
        }
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_secure() {
        for name in ["n14", "n15", "n16", "n17"] {
            let p = Params::preset(name).unwrap();
            let bound = SECURITY_128_MAX_LOG_QP
                .iter()
                .find(|(l, _)| *l == p.literal().log_n)
                .unwrap()
                .1;
            assert!(p.log_qp() <= f64::from(bound), "{name}: {}", p.log_qp());
            assert_eq!(p.security_bits(), Some(128));
            for level in 0..=p.max_level() {
                let drift = (p.scale(level).log2() - p.literal().log_scale).abs();
                assert!(drift < 0.2, "{name} level {level}: scale 2^{}", p.scale(level).log2());
            }
        }
        // The 128-bit sets that carry whole models: scale 2^30.9, and P over
        // every digit's modulus by at least 8 bits (n14 and n15 have 2 and 5).
        for name in ["n16", "n17"] {
            let p = Params::preset(name).unwrap();
            assert_eq!(p.literal().log_scale, 30.9);
            let log_p: f64 = (0..p.ring().p_count())
                .map(|j| f64::from(p.ring().p(j).value()).log2())
                .sum();
            for digit in p.digits(p.max_level()) {
                let log_digit: f64 = digit.map(|i| f64::from(p.ring().q(i).value()).log2()).sum();
                assert!(
                    log_p - log_digit >= 8.0,
                    "{name}: P 2^{log_p:.1}, a digit 2^{log_digit:.1}"
                );
            }
        }
        assert!(Params::preset("n16").unwrap().max_level() >= 31);
        assert!(Params::preset("n17").unwrap().max_level() >= 85);
        assert_eq!(Params::preset("insecure-n12").unwrap().security_bits(), None);
    }

    #[test]
    fn over_the_bound_is_refused_unless_asked() {
        let literal = ParamsLiteral {
            log_n: 14,
            log_q: std::iter::once(31).chain(std::iter::repeat_n(30, 13)).collect(),
            log_p: vec![31; 2],
            log_scale: 30.0,
            dnum: 7,
        };
        assert!(matches!(
            Params::new(literal.clone(), false),
            Err(CkksError::Insecure { bound: 438, .. })
        ));
        assert_eq!(Params::new(literal, true).unwrap().security_bits(), None);
    }

    /// More primes than [`MAX_PRIMES`] are refused before any prime is
    /// searched for, even where insecure sets are allowed.
    #[test]
    fn too_many_primes_are_refused() {
        let literal = ParamsLiteral {
            log_n: 17,
            log_q: vec![30; 300],
            log_p: vec![30; 2],
            log_scale: 30.0,
            dnum: 150,
        };
        match Params::new(literal, true) {
            Err(CkksError::InvalidParams { reason }) => assert!(reason.contains("302 primes"), "{reason}"),
            other => panic!("{:?}", other.map(|p| p.max_level())),
        }
    }

    /// A set over the bound by its declared prime sizes is refused from
    /// those sizes (half a bit under each), before the primes are built.
    #[test]
    fn security_is_checked_on_the_declared_sizes_first() {
        let literal = ParamsLiteral {
            log_n: 14,
            log_q: vec![30; 100],
            log_p: vec![30; 2],
            log_scale: 30.0,
            dnum: 50,
        };
        match Params::new(literal, false) {
            Err(CkksError::Insecure { log_qp, bound: 438, .. }) => assert_eq!(log_qp, 102.0 * 29.5),
            other => panic!("{:?}", other.map(|p| p.max_level())),
        }
    }

    #[test]
    fn malformed_literals_are_refused() {
        let good = ParamsLiteral::preset("n14").unwrap();
        let cases = [
            ParamsLiteral {
                log_n: 9,
                ..good.clone()
            },
            ParamsLiteral {
                log_q: vec![],
                ..good.clone()
            },
            ParamsLiteral {
                log_p: vec![32],
                ..good.clone()
            },
            ParamsLiteral {
                dnum: 0,
                ..good.clone()
            },
            ParamsLiteral {
                dnum: 1,
                ..good.clone()
            },
            // Rescaled primes alternating 29 and 31 bits around a 2^30 scale:
            // the scale halves every other level.
            ParamsLiteral {
                log_q: std::iter::once(31).chain((0..8).map(|i| 29 + 2 * (i % 2))).collect(),
                ..good.clone()
            },
            ParamsLiteral {
                log_scale: 50.0,
                ..good
            },
        ];
        for literal in cases {
            assert!(matches!(
                Params::new(literal, true),
                Err(CkksError::InvalidParams { .. })
            ));
        }
    }
}
