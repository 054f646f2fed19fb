//! Keys: the ternary secret, the public encryption key, and switching keys
//! (relinearization, Galois) for hybrid key switching. The uniform half of
//! every public key is re-expanded from a 32-byte seed.

use super::params::{hex, Params};
use crate::ring::automorphism::rotation_galois_element;
use crate::ring::sampler::{uniform, uniform_limb, Sampler, Seed};
use crate::ring::{Coeff, Eval, LimbLayout, RnsPoly};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A random identifier shared by a secret key, its public key set and every
/// ciphertext encrypted under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// The secret key: uniform ternary coefficients.
///
/// Invariant: `eval` is the NTT of `coeffs` over every prime of `Q ++ P`.
/// Never serialized into anything meant for the server.
pub struct SecretKey {
    pub(crate) params: Arc<Params>,
    pub(crate) id: KeyId,
    pub(crate) coeffs: Vec<i8>,
    pub(crate) eval: RnsPoly<Eval>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A fresh key from the OS-seeded CSPRNG.
    pub fn generate(params: &Arc<Params>) -> Self {
        let mut sampler = Sampler::from_os();
        let mut id = [0u8; 16];
        sampler.fill_bytes(&mut id);
        let coeffs: Vec<i8> = sampler.ternary(params.n()).into_iter().map(|c| c as i8).collect();
        Self::from_parts(params, KeyId(id), coeffs)
    }

    /// Rebuilds a key from its identifier and coefficients (file loading).
    pub(crate) fn from_parts(params: &Arc<Params>, id: KeyId, coeffs: Vec<i8>) -> Self {
        let ring = params.ring();
        let wide: Vec<i64> = coeffs.iter().map(|&c| i64::from(c)).collect();
        let eval = RnsPoly::<Coeff>::from_signed(ring, ring.full_layout(), &wide).into_eval(ring);
        Self {
            params: params.clone(),
            id: KeyId(id.0),
            coeffs,
            eval,
        }
    }

    /// The key's identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The parameters the key belongs to.
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    /// `s` over the first `q` ciphertext primes.
    pub(crate) fn eval_q(&self, q: usize) -> RnsPoly<Eval> {
        self.eval.restricted(LimbLayout::q_only(q))
    }
}

/// How the uniform `a` halves of keys are held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyMemory {
    /// Expanded once: twice the memory of [`Self::Compact`], no work per use.
    Expanded,
    /// Only the 32-byte seed is kept; each key switch re-expands the limbs
    /// it reads. Halves key memory at the price of a ChaCha20 stream per
    /// digit and limb of every key switch.
    Compact,
}

impl KeyMemory {
    /// Bytes per key word pair held in memory: `b` and, when expanded, `a`.
    pub fn halves(self) -> usize {
        match self {
            Self::Expanded => 2,
            Self::Compact => 1,
        }
    }
}

/// An RLWE sample `(b, a)` whose `a` is the uniform polynomial of `a_seed`
/// ([`crate::ring::sampler::uniform`]) over `b`'s layout.
///
/// Invariant: `a`, when held ([`KeyMemory::Expanded`]), is that expansion.
#[derive(Clone, Debug)]
pub struct SeededPair {
    pub(crate) b: RnsPoly<Eval>,
    a: Option<RnsPoly<Eval>>,
    pub(crate) a_seed: Seed,
}

impl PartialEq for SeededPair {
    /// Equal samples: `a` follows from the seed, held or not.
    fn eq(&self, other: &Self) -> bool {
        self.b == other.b && self.a_seed == other.a_seed
    }
}

impl SeededPair {
    /// `(b, a)` with `b = -a*s + e` over `layout`.
    fn sample(
        params: &Params,
        sk: &RnsPoly<Eval>,
        layout: LimbLayout,
        sampler: &mut Sampler,
        memory: KeyMemory,
    ) -> Self {
        let ring = params.ring();
        let a_seed = sampler.seed();
        let a = uniform(&a_seed, ring, layout);
        let e = RnsPoly::<Coeff>::from_signed(ring, layout, &sampler.gaussian(params.n())).into_eval(ring);
        let mut b = a.clone();
        b.mul_assign(ring, sk);
        b.neg_assign(ring);
        b.add_assign(ring, &e);
        Self {
            b,
            a: (memory == KeyMemory::Expanded).then_some(a),
            a_seed,
        }
    }

    /// Rebuilds a pair from `b` and the seed of `a`, expanding `a` now or
    /// on each use as `memory` says.
    pub(crate) fn from_seed(params: &Params, b: RnsPoly<Eval>, a_seed: Seed, memory: KeyMemory) -> Self {
        let a = (memory == KeyMemory::Expanded).then(|| uniform(&a_seed, params.ring(), b.layout()));
        Self { b, a, a_seed }
    }

    /// The whole `a` half: borrowed when expanded, else expanded now.
    pub(crate) fn a(&self, params: &Params) -> Cow<'_, RnsPoly<Eval>> {
        match &self.a {
            Some(a) => Cow::Borrowed(a),
            None => Cow::Owned(uniform(&self.a_seed, params.ring(), self.b.layout())),
        }
    }

    /// Limb `i` of `a` (in `b`'s layout): borrowed when expanded, else
    /// expanded into `scratch` (of `N` words).
    pub(crate) fn a_limb<'s>(&'s self, params: &Params, i: usize, scratch: &'s mut [u32]) -> &'s [u32] {
        match &self.a {
            Some(a) => a.limb(i),
            None => {
                let ring = params.ring();
                let layout = self.b.layout();
                uniform_limb(
                    &self.a_seed,
                    ring.global_index(layout, i),
                    ring.modulus(layout, i).value(),
                    scratch,
                );
                scratch
            }
        }
    }

    /// How `a` is held.
    pub fn memory(&self) -> KeyMemory {
        if self.a.is_some() {
            KeyMemory::Expanded
        } else {
            KeyMemory::Compact
        }
    }

    /// Bytes the pair takes in memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory().halves() * self.b.words().len() * 4
    }
}

/// The public encryption key `(-a*s + e, a)` over `Q_L ++ P`: encryption
/// works over the extended basis and divides by `P`, which leaves only the
/// rounding error of that division as fresh noise.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicKey {
    pub(crate) pair: SeededPair,
}

/// A hybrid key-switching key from `s'` to `s`: one RLWE sample over
/// `Q_L ++ P` per digit, with `P * s'` added on the digit's own primes.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchingKey {
    pub(crate) digits: Vec<SeededPair>,
}

impl SwitchingKey {
    /// A key serving ciphertexts up to `level`: its samples live over
    /// `Q_level ++ P` only, which is all a key switch at that level reads.
    fn generate(
        params: &Params,
        sk: &SecretKey,
        from: &RnsPoly<Eval>,
        level: usize,
        sampler: &mut Sampler,
        memory: KeyMemory,
    ) -> Self {
        let ring = params.ring();
        let layout = LimbLayout {
            q: level + 1,
            p: ring.p_count(),
        };
        let n = params.n();
        let digits = params
            .digits(level)
            .into_iter()
            .map(|range| {
                let mut pair = SeededPair::sample(params, &sk.eval.restricted(layout), layout, sampler, memory);
                for i in range {
                    let m = ring.q(i);
                    let p_mod = (0..ring.p_count()).fold(1, |acc, j| m.mul(acc, ring.p(j).value() % m.value()));
                    let p_shoup = m.shoup(p_mod);
                    let src = &from.words()[i * n..(i + 1) * n];
                    for (b, &s) in pair.b.limb_mut(i).iter_mut().zip(src) {
                        *b = m.add(*b, m.mul_shoup(s, p_mod, p_shoup));
                    }
                }
                pair
            })
            .collect();
        Self { digits }
    }
}

impl SwitchingKey {
    /// The highest ciphertext level the key can switch.
    pub fn level(&self) -> usize {
        self.digits.first().map_or(0, |d| d.b.layout().q - 1)
    }

    /// Bytes the key takes in memory.
    pub fn memory_bytes(&self) -> usize {
        self.digits.iter().map(SeededPair::memory_bytes).sum()
    }

    /// Whether the `a` halves are re-expanded on each use.
    pub fn is_compact(&self) -> bool {
        self.digits.iter().any(|d| d.memory() == KeyMemory::Compact)
    }
}

/// Which evaluation keys to generate, and the highest level each must
/// serve (a key is no larger than its level needs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLevels {
    /// The relinearization key's level, `None` for no key.
    pub relin: Option<usize>,
    /// Rotations (slot steps) with the level of each Galois key.
    pub rotations: Vec<(i64, usize)>,
}

impl KeyLevels {
    /// Bytes these keys take in memory once generated or loaded and held
    /// as `memory` says, before any is made.
    pub fn memory_bytes(&self, params: &Params, memory: KeyMemory) -> usize {
        let key = |level: usize| {
            let level = level.min(params.max_level());
            let limbs = level + 1 + params.ring().p_count();
            params.digits(level).len() * memory.halves() * limbs * params.n() * 4
        };
        self.relin.map_or(0, key) + self.rotations.iter().map(|&(_, l)| key(l)).sum::<usize>()
    }

    /// The first key of `needed` that these keys do not serve (missing, or
    /// made for a lower level), described in words; `None` when they serve
    /// all of them.
    pub fn first_missing(&self, needed: &KeyLevels) -> Option<String> {
        if let Some(level) = needed.relin {
            if self.relin.is_none_or(|have| have < level) {
                return Some(format!("the relinearization key at level {level}"));
            }
        }
        needed.rotations.iter().find_map(|&(r, level)| {
            let served = self.rotations.iter().any(|&(have, l)| have == r && l >= level);
            (!served).then(|| format!("the Galois key of rotation {r} at level {level}"))
        })
    }

    /// Every key at the top level of `params`.
    pub fn top(params: &Params, rotations: &[i64]) -> Self {
        Self {
            relin: Some(params.max_level()),
            rotations: rotations.iter().map(|&r| (r, params.max_level())).collect(),
        }
    }
}

/// Everything the server needs and nothing secret: the public key, the
/// relinearization key and the Galois keys of exactly the requested rotations.
///
/// Invariant: all parts were generated from the secret key `id`.
#[derive(Clone, Debug)]
pub struct PublicKeySet {
    pub(crate) params: Arc<Params>,
    pub(crate) id: KeyId,
    pub(crate) public: PublicKey,
    pub(crate) relin: Option<SwitchingKey>,
    pub(crate) galois: BTreeMap<u64, SwitchingKey>,
    pub(crate) rotations: Vec<i64>,
}

impl PublicKeySet {
    /// Generates the public key, the relinearization key and one Galois key
    /// per distinct non-zero rotation in `rotations` (slot steps, negative
    /// rotates right), all at the top level.
    pub fn generate(sk: &SecretKey, rotations: &[i64]) -> Self {
        Self::generate_at(sk, &KeyLevels::top(&sk.params, rotations), KeyMemory::Expanded)
    }

    /// Generates the public key and the evaluation keys of `levels`, each
    /// over the primes of its level only (levels above the top are clamped),
    /// holding their `a` halves as `memory` says (the public key's always
    /// expanded).
    pub fn generate_at(sk: &SecretKey, levels: &KeyLevels, memory: KeyMemory) -> Self {
        Self::generate_counted(sk, levels, memory, &mut |_, _| {})
    }

    /// [`Self::generate_at`], calling `made(done, total)` with the number of
    /// switching keys made so far out of all it makes: once with `done = 0`
    /// after the public key, then after each key.
    pub fn generate_counted(
        sk: &SecretKey,
        levels: &KeyLevels,
        memory: KeyMemory,
        made: &mut dyn FnMut(usize, usize),
    ) -> Self {
        let params = sk.params.clone();
        let ring = params.ring();
        let top = params.max_level();
        let mut sampler = Sampler::from_os();
        let public = PublicKey {
            pair: SeededPair::sample(&params, &sk.eval, ring.full_layout(), &mut sampler, KeyMemory::Expanded),
        };
        let galois: BTreeSet<u64> = levels
            .rotations
            .iter()
            .map(|&(steps, _)| rotation_galois_element(steps, params.n()))
            .filter(|&g| g != 1)
            .collect();
        let total = usize::from(levels.relin.is_some()) + galois.len();
        made(0, total);
        let relin = levels.relin.map(|level| {
            let q = level.min(top) + 1;
            let mut s2 = sk.eval_q(q);
            s2.mul_assign(ring, &sk.eval_q(q));
            let key = SwitchingKey::generate(&params, sk, &s2, level.min(top), &mut sampler, memory);
            made(1, total);
            key
        });
        let mut set = Self {
            params: params.clone(),
            id: sk.id,
            public,
            relin,
            galois: BTreeMap::new(),
            rotations: Vec::new(),
        };
        let n = params.n();
        let s = sk.eval_q(top + 1).into_coeff(ring);
        for &(steps, level) in &levels.rotations {
            let g = rotation_galois_element(steps, n);
            if g == 1 || set.galois.contains_key(&g) {
                continue;
            }
            let level = level.min(top);
            let rotated = s
                .automorphism(ring, g)
                .into_eval(ring)
                .restricted(LimbLayout::q_only(level + 1));
            set.galois.insert(
                g,
                SwitchingKey::generate(&params, sk, &rotated, level, &mut sampler, memory),
            );
            set.rotations.push(steps);
            made(usize::from(set.relin.is_some()) + set.galois.len(), total);
        }
        set
    }

    /// The level of every evaluation key.
    pub fn levels(&self) -> KeyLevels {
        let n = self.params.n();
        KeyLevels {
            relin: self.relin.as_ref().map(SwitchingKey::level),
            rotations: self
                .rotations
                .iter()
                .filter_map(|&r| self.galois.get(&rotation_galois_element(r, n)).map(|k| (r, k.level())))
                .collect(),
        }
    }

    /// How the evaluation keys hold their `a` halves (compact if any key
    /// does; a set is generated or loaded one way throughout).
    pub fn memory(&self) -> KeyMemory {
        if self
            .relin
            .iter()
            .chain(self.galois.values())
            .any(SwitchingKey::is_compact)
        {
            KeyMemory::Compact
        } else {
            KeyMemory::Expanded
        }
    }

    /// Bytes the evaluation keys take in memory.
    pub fn memory_bytes(&self) -> usize {
        self.relin
            .iter()
            .chain(self.galois.values())
            .map(SwitchingKey::memory_bytes)
            .sum()
    }

    /// The key identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The parameters.
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    /// The rotations (slot steps) that have a Galois key.
    pub fn rotations(&self) -> &[i64] {
        &self.rotations
    }

    /// The Galois key of element `g`, if generated.
    pub fn galois_key(&self, g: u64) -> Option<&SwitchingKey> {
        self.galois.get(&g)
    }

    /// The relinearization key, if generated.
    pub fn relin_key(&self) -> Option<&SwitchingKey> {
        self.relin.as_ref()
    }
}
