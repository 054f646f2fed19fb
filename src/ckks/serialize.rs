//! Versioned binary files: the secret key, the public key set (everything a
//! server needs and nothing secret) and ciphertexts.
//!
//! # Format, version 2
//!
//! All integers are little-endian. A file is a 52-byte header, a body and a
//! 32-byte checksum:
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! | 0      | 8    | magic `LATENTHE`                                         |
//! | 8      | 2    | format version (`u16`, [`FORMAT_VERSION`])               |
//! | 10     | 1    | kind: 1 secret key, 2 public key set, 3 ciphertexts, 4 passphrase-encrypted secret key |
//! | 11     | 1    | reserved, 0                                              |
//! | 12     | 16   | parameter fingerprint ([`Params::fingerprint`])          |
//! | 28     | 16   | key identifier ([`KeyId`]; for ciphertexts, the key of the first one, zero when there is none) |
//! | 44     | 8    | body length `B` (`u64`)                                  |
//! | 52     | B    | body (per kind, below)                                   |
//! | 52 + B | 32   | BLAKE3 hash of bytes `0 .. 52 + B`                       |
//!
//! The file is exactly `52 + B + 32` bytes long. The checksum detects
//! accidental damage; it is not a signature.
//!
//! Building blocks of the bodies:
//!
//! - *params*: `u32` length + the [`ParamsLiteral`] as JSON, then `u8` 0 (no
//!   name) or 1 followed by `u16` length + the preset name (UTF-8). A loader
//!   rebuilds [`Params`] with [`Params::preset`] when a name is present (its
//!   literal must equal the stored one), else with [`Params::new`] allowing
//!   insecure sets (the file was made by this library), and refuses the file
//!   unless the rebuilt fingerprint equals the header's.
//! - *poly*: layout `q: u32`, `p: u32`, then `(q + p) * N` words (`u32`),
//!   limb-major, in evaluation (NTT) form; every word is canonical (below the
//!   prime of its limb) or the file is refused.
//! - *pair* (an RLWE sample `(b, a)` of a key): the `b` *poly*, then the
//!   32-byte seed of `a`. `a` is not stored, which halves the size of keys:
//!   its limb of global prime index `k` (`k < L + 1` for `q_k`, `L + 1 + j`
//!   for `p_j`) holds the values below that prime drawn, by rejection of
//!   32-bit words, from ChaCha20 stream `k` of the seed
//!   ([`crate::ring::sampler::uniform_limb`]). Version 1 drew every limb
//!   from stream 0 in turn; its keys are refused.
//! - *switching key*: `u32` digit count, then one *pair* per digit, all over
//!   the same layout `Q_level ++ P`: the key serves ciphertexts up to `level`
//!   (its pairs' `q - 1`), and the digit count must be the parameter set's
//!   number of digits at that level. A key no larger than its level needs.
//!
//! Bodies:
//!
//! - secret key (kind 1): *params*, then the `N` ternary coefficients packed
//!   four to a byte, two bits each, least significant first (0 → 0, 1 → +1,
//!   2 → −1; 3 is refused).
//! - public key set (kind 2): *params*; the public key *pair*; `u8` 0/1 and,
//!   when 1, the relinearization *switching key*; `u32` count of Galois keys
//!   and for each, in the order the rotations were requested, the Galois
//!   element (`u64`), the rotation in slots it was generated for (`i64`,
//!   whose Galois element must be the stored one) and its *switching key*.
//!   The rotation list of the key set is the list of these rotations.
//! - ciphertexts (kind 3): `u32` rank + one `u64` per dimension of the
//!   shape; `u64` number of packed values (at most count × N/2); `u32`
//!   count; per ciphertext its key identifier (16 bytes), level (`u32`),
//!   scale (`f64` bits, finite and positive), then `c0` and `c1` as *poly*
//!   over `level + 1` ciphertext primes. The parameters are not stored: the
//!   loader is given them (from the key) and refuses a fingerprint mismatch.
//! - passphrase-encrypted secret key (kind 4): the header's fingerprint and
//!   key identifier are the key's; the body is described in
//!   [`super::sealed`].
//!
//! Loaders never panic on any input, never allocate from a length before
//! checking it against the bytes that remain, and refuse trailing bytes.

use super::ciphertext::Ciphertext;
use super::error::CkksError;
use super::evaluator::check_scales;
use super::keys::{KeyId, KeyLevels, KeyMemory, PublicKey, PublicKeySet, SecretKey, SeededPair, SwitchingKey};
use super::params::{hex, Params, ParamsLiteral, LOG_N_RANGE, MAX_PRIMES};
use crate::ring::automorphism::rotation_galois_element;
use crate::ring::sampler::Seed;
use crate::ring::{Eval, LimbLayout, RnsPoly};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The 8 bytes every file starts with.
pub const MAGIC: [u8; 8] = *b"LATENTHE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 52;
/// Size of the trailing BLAKE3 checksum in bytes.
pub const CHECKSUM_LEN: usize = 32;

/// Longest parameter JSON a loader accepts.
const MAX_PARAMS_JSON: usize = 16 * 1024;
/// Longest preset name a loader accepts.
const MAX_NAME: usize = 256;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A [`SecretKey`] (kind byte 1).
    SecretKey,
    /// A [`PublicKeySet`] (kind byte 2).
    PublicKeys,
    /// A [`CiphertextFile`] (kind byte 3).
    Ciphertexts,
    /// A secret key encrypted under a passphrase (kind byte 4,
    /// [`super::sealed`]).
    SealedSecretKey,
}

impl FileKind {
    /// The kind byte in the header.
    pub fn code(self) -> u8 {
        match self {
            Self::SecretKey => 1,
            Self::PublicKeys => 2,
            Self::Ciphertexts => 3,
            Self::SealedSecretKey => 4,
        }
    }

    /// The kind of a header byte, `None` for unknown bytes.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::SecretKey),
            2 => Some(Self::PublicKeys),
            3 => Some(Self::Ciphertexts),
            4 => Some(Self::SealedSecretKey),
            _ => None,
        }
    }

    /// A human name ("secret key", "public key set", "ciphertext",
    /// "passphrase-encrypted secret key").
    pub fn name(self) -> &'static str {
        match self {
            Self::SecretKey => "secret key",
            Self::PublicKeys => "public key set",
            Self::Ciphertexts => "ciphertext",
            Self::SealedSecretKey => "passphrase-encrypted secret key",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a file could not be written or read. Every message is one line;
/// errors of the `load_*` / `save_*` functions name the path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Another error, about the file at `path`.
    #[error("{}: {error}", path.display())]
    At {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it (never itself `At`).
        error: Box<FileError>,
    },
    /// The bytes do not start with the magic.
    #[error("not a latent-he file (bad magic)")]
    NotLatentHe,
    /// A valid file of another kind.
    #[error("wrong file kind: expected a {expected} file, found a {found} file")]
    WrongKind {
        /// What the caller asked for.
        expected: FileKind,
        /// What the file holds.
        found: FileKind,
    },
    /// A format version this build cannot read.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// Fewer bytes than the header announces (or than a header needs).
    #[error("truncated file (expected {expected} bytes, found {found})")]
    Truncated {
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The bytes do not hash to the stored checksum.
    #[error("checksum mismatch: the file is damaged")]
    ChecksumMismatch,
    /// Ciphertexts made under other parameters than the ones given.
    #[error("file was made with other parameters (fingerprint {found}, expected {expected})")]
    ParamsMismatch {
        /// Fingerprint of the parameters given, hex.
        expected: String,
        /// Fingerprint in the file, hex.
        found: String,
    },
    /// A well-formed, checksummed file whose content is invalid.
    #[error("corrupt file: {reason}")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// The stored parameters cannot be rebuilt.
    #[error("{0}")]
    Params(#[from] CkksError),
    /// A passphrase-encrypted secret key opened without a passphrase.
    #[error("the secret key is encrypted under a passphrase and none was given")]
    PassphraseRequired,
    /// The passphrase does not open the encrypted secret key, or the file
    /// was altered (the two cannot be told apart).
    #[error("wrong passphrase, or the encrypted secret key was altered")]
    WrongPassphrase,
    /// A passphrase that cannot be used.
    #[error("unusable passphrase: {reason}")]
    Passphrase {
        /// Why.
        reason: String,
    },
}

impl FileError {
    /// The error without its path: for [`FileError::At`] the wrapped error,
    /// otherwise `self`.
    pub fn innermost(&self) -> &FileError {
        match self {
            Self::At { error, .. } => error.innermost(),
            other => other,
        }
    }

    pub(super) fn at(self, path: &Path) -> Self {
        match self {
            Self::At { .. } | Self::Io { .. } => self,
            other => Self::At {
                path: path.to_path_buf(),
                error: Box::new(other),
            },
        }
    }
}

pub(super) fn corrupt(reason: impl Into<String>) -> FileError {
    FileError::Corrupt { reason: reason.into() }
}

/// The fixed header of a file, as read by [`peek_header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version (always [`FORMAT_VERSION`] when returned).
    pub version: u16,
    /// What the file holds.
    pub kind: FileKind,
    /// Fingerprint of the parameters the content was made with.
    pub fingerprint: [u8; 16],
    /// The key: of the key itself, or of the (first) ciphertext; all zero for
    /// an empty ciphertext file.
    pub key_id: KeyId,
    /// Length of the body in bytes.
    pub body_len: u64,
}

impl FileHeader {
    /// The total length a complete file with this header has.
    pub fn file_len(&self) -> u64 {
        (HEADER_LEN + CHECKSUM_LEN) as u64 + self.body_len
    }
}

/// Ciphertexts of one tensor, as stored in a ciphertext file.
///
/// Invariants checked on load: every ciphertext is at a level of the
/// parameter set at that level's canonical scale, and `values <=
/// ciphertexts.len() * N/2`. `shape` and the packing of `values` into slots
/// are the writer's convention; the file only records them.
#[derive(Clone, Debug, PartialEq)]
pub struct CiphertextFile {
    /// Shape of the encrypted tensor.
    pub shape: Vec<usize>,
    /// Number of real values packed into the ciphertexts.
    pub values: usize,
    /// The ciphertexts.
    pub ciphertexts: Vec<Ciphertext>,
}

impl CiphertextFile {
    /// The key all ciphertexts were encrypted under; `None` when there are no
    /// ciphertexts or they belong to different keys.
    pub fn key_id(&self) -> Option<KeyId> {
        let first = self.ciphertexts.first()?.key_id();
        self.ciphertexts.iter().all(|c| c.key_id() == first).then_some(first)
    }
}

// ---------------------------------------------------------------- writing

/// Encodes a file: into memory whole, or streamed to a sink in chunks.
pub(super) struct Writer<'s> {
    buf: Vec<u8>,
    /// Where `buf` is emptied once it holds [`STREAM_CHUNK`] bytes; `None`
    /// keeps the whole file in `buf`.
    sink: Option<&'s mut dyn Write>,
    /// The checksum of what went to the sink.
    hasher: blake3::Hasher,
    /// Bytes that went to the sink.
    streamed: u64,
    /// The body length the header announces (0 for in-memory writers,
    /// whose header is patched at the end).
    announced: u64,
    /// The first error of the sink; later writes are skipped.
    error: Option<std::io::Error>,
}

/// Bytes a streaming [`Writer`] holds before it writes them out.
const STREAM_CHUNK: usize = 1 << 22;

impl<'s> Writer<'s> {
    /// A writer of the whole file in memory; the body length in the header
    /// is filled in by [`Self::into_bytes`].
    pub(super) fn new(kind: FileKind, fingerprint: [u8; 16], key_id: KeyId, capacity: usize) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(HEADER_LEN + capacity + CHECKSUM_LEN),
            sink: None,
            hasher: blake3::Hasher::new(),
            streamed: 0,
            announced: 0,
            error: None,
        };
        w.header(kind, fingerprint, key_id, 0);
        w
    }

    /// A writer to `sink` of a file whose body is exactly `body_len` bytes
    /// (checked by [`Self::finish_stream`]).
    fn streaming(
        kind: FileKind,
        fingerprint: [u8; 16],
        key_id: KeyId,
        body_len: usize,
        sink: &'s mut dyn Write,
    ) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(STREAM_CHUNK + (1 << 16)),
            sink: Some(sink),
            hasher: blake3::Hasher::new(),
            streamed: 0,
            announced: 0,
            error: None,
        };
        w.header(kind, fingerprint, key_id, body_len as u64);
        w
    }

    fn header(&mut self, kind: FileKind, fingerprint: [u8; 16], key_id: KeyId, body_len: u64) {
        self.buf.extend_from_slice(&MAGIC);
        self.buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        self.buf.push(kind.code());
        self.buf.push(0);
        self.buf.extend_from_slice(&fingerprint);
        self.buf.extend_from_slice(&key_id.0);
        self.buf.extend_from_slice(&body_len.to_le_bytes());
        self.announced = body_len;
        debug_assert_eq!(self.buf.len(), HEADER_LEN);
    }

    /// Hands `buf` to the sink, if there is one and `buf` is full enough.
    fn spill(&mut self, at_least: usize) {
        let Some(sink) = self.sink.as_mut() else { return };
        if self.buf.len() < at_least {
            return;
        }
        self.hasher.update(&self.buf);
        self.streamed += self.buf.len() as u64;
        if self.error.is_none() {
            if let Err(e) = sink.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    pub(super) fn u8(&mut self, x: u8) {
        self.buf.push(x);
    }

    fn u16(&mut self, x: u16) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }

    pub(super) fn u32(&mut self, x: u32) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }

    fn u64(&mut self, x: u64) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }

    pub(super) fn len32(&mut self, x: usize) {
        self.u32(u32::try_from(x).expect("count fits in u32"));
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn params(&mut self, params: &Params) {
        let json = params_json(params);
        self.len32(json.len());
        self.bytes(&json);
        match params.name() {
            Some(name) => {
                self.u8(1);
                self.u16(u16::try_from(name.len()).expect("preset names are short"));
                self.bytes(name.as_bytes());
            }
            None => self.u8(0),
        }
    }

    fn poly(&mut self, poly: &RnsPoly<Eval>) {
        let layout = poly.layout();
        self.len32(layout.q);
        self.len32(layout.p);
        let n = poly.n();
        for limb in poly.words().chunks(n.max(1)) {
            self.buf.reserve(limb.len() * 4);
            for w in limb {
                self.buf.extend_from_slice(&w.to_le_bytes());
            }
            self.spill(STREAM_CHUNK);
        }
    }

    fn pair(&mut self, pair: &SeededPair) {
        self.poly(&pair.b);
        self.bytes(&pair.a_seed);
    }

    fn switching_key(&mut self, key: &SwitchingKey) {
        self.len32(key.digits.len());
        for pair in &key.digits {
            self.pair(pair);
        }
    }

    /// The whole file of an in-memory writer: header with the body length,
    /// body, checksum.
    pub(super) fn into_bytes(mut self) -> Vec<u8> {
        debug_assert!(self.sink.is_none(), "a streaming writer ends with finish_stream");
        let body_len = (self.buf.len() - HEADER_LEN) as u64;
        self.buf[44..52].copy_from_slice(&body_len.to_le_bytes());
        let hash = blake3::hash(&self.buf);
        self.buf.extend_from_slice(hash.as_bytes());
        self.buf
    }

    /// Writes what is left and the checksum to the sink.
    ///
    /// # Panics
    /// If the body written is not the length announced in the header: the
    /// length functions and the writer disagree, a bug.
    fn finish_stream(mut self) -> std::io::Result<()> {
        self.spill(0);
        assert_eq!(
            self.streamed,
            (HEADER_LEN as u64) + self.announced,
            "the announced body length does not match what was written"
        );
        let hash = self.hasher.finalize();
        self.buf.extend_from_slice(hash.as_bytes());
        let tail = std::mem::take(&mut self.buf);
        match (self.error.take(), self.sink.as_mut()) {
            (Some(e), _) => Err(e),
            (None, Some(sink)) => sink.write_all(&tail),
            (None, None) => Ok(()),
        }
    }
}

fn poly_bytes(layout: LimbLayout, n: usize) -> usize {
    8 + layout.len() * n * 4
}

fn params_json(params: &Params) -> Vec<u8> {
    serde_json::to_vec(params.literal()).expect("a parameter literal always serializes")
}

/// Exact size of the *params* block.
fn params_bytes(params: &Params) -> usize {
    4 + params_json(params).len() + 1 + params.name().map_or(0, |name| 2 + name.len())
}

/// Encodes a secret key (format in the [module docs](self)).
///
/// The bytes are secret: store them only where the secret key may be.
pub fn secret_key_to_bytes(sk: &SecretKey) -> Vec<u8> {
    let params = sk.params();
    let mut w = Writer::new(
        FileKind::SecretKey,
        params.fingerprint(),
        sk.id(),
        params_bytes(params) + sk.coeffs.len() / 4,
    );
    w.params(params);
    for chunk in sk.coeffs.chunks(4) {
        let mut byte = 0u8;
        for (k, &c) in chunk.iter().enumerate() {
            let code = match c {
                0 => 0,
                1 => 1,
                _ => 2,
            };
            byte |= code << (2 * k);
        }
        w.u8(byte);
    }
    w.into_bytes()
}

/// Encodes a public key set: public key, relinearization key and Galois
/// keys, each `a` half as its 32-byte seed. Holds nothing secret.
pub fn public_keys_to_bytes(keys: &PublicKeySet) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(public_keys_file_bytes(keys.params(), &keys.levels()));
    write_public_keys(&mut bytes, keys).expect("writing to a Vec cannot fail");
    bytes
}

/// Streams the file of [`public_keys_to_bytes`] to `sink`, holding at most
/// a few megabytes of it at a time (a key set can outweigh the memory left
/// beside it).
fn write_public_keys(sink: &mut dyn Write, keys: &PublicKeySet) -> std::io::Result<()> {
    let params = keys.params();
    let n = params.n();
    let body_len = public_keys_body_bytes(params, &keys.levels());
    let mut w = Writer::streaming(FileKind::PublicKeys, params.fingerprint(), keys.id(), body_len, sink);
    w.params(params);
    w.pair(&keys.public.pair);
    match &keys.relin {
        Some(relin) => {
            w.u8(1);
            w.switching_key(relin);
        }
        None => w.u8(0),
    }
    let galois: Vec<(u64, i64, &SwitchingKey)> = keys
        .rotations
        .iter()
        .filter_map(|&steps| {
            let g = rotation_galois_element(steps, n);
            keys.galois.get(&g).map(|key| (g, steps, key))
        })
        .collect();
    w.len32(galois.len());
    for (g, steps, key) in galois {
        w.u64(g);
        w.u64(steps as u64);
        w.switching_key(key);
    }
    w.finish_stream()
}

/// Exact body size of a public key set whose evaluation keys serve `levels`.
fn public_keys_body_bytes(params: &Params, levels: &KeyLevels) -> usize {
    let key = |level: usize| {
        let layout = LimbLayout {
            q: level.min(params.max_level()) + 1,
            p: params.ring().p_count(),
        };
        4 + params.digits(level.min(params.max_level())).len() * (poly_bytes(layout, params.n()) + 32)
    };
    let public = poly_bytes(params.ring().full_layout(), params.n()) + 32;
    let galois: usize = levels.rotations.iter().map(|&(_, level)| 16 + key(level)).sum();
    params_bytes(params) + public + 5 + levels.relin.map_or(0, key) + galois
}

/// Size of a public key set file with the evaluation keys of `levels`, to
/// report before generating them.
pub fn public_keys_file_bytes(params: &Params, levels: &KeyLevels) -> usize {
    HEADER_LEN + public_keys_body_bytes(params, levels) + CHECKSUM_LEN
}

/// Size of a file of `count` ciphertexts at `level` with a shape of `rank`
/// dimensions.
pub fn ciphertexts_file_bytes(params: &Params, level: usize, count: usize, rank: usize) -> usize {
    let one = 28 + 2 * poly_bytes(LimbLayout::q_only(level + 1), params.n());
    HEADER_LEN + 16 + 8 * rank + count * one + CHECKSUM_LEN
}

/// Encodes ciphertexts made under `params`. The header records the
/// fingerprint of `params` and the key of the first ciphertext.
pub fn ciphertexts_to_bytes(file: &CiphertextFile, params: &Params) -> Vec<u8> {
    let key_id = file.ciphertexts.first().map_or(KeyId([0; 16]), Ciphertext::key_id);
    let size: usize = file
        .ciphertexts
        .iter()
        .map(|c| 28 + 2 * poly_bytes(c.c0.layout(), c.c0.n()))
        .sum();
    let mut w = Writer::new(
        FileKind::Ciphertexts,
        params.fingerprint(),
        key_id,
        16 + 8 * file.shape.len() + size,
    );
    w.len32(file.shape.len());
    for &d in &file.shape {
        w.u64(d as u64);
    }
    w.u64(file.values as u64);
    w.len32(file.ciphertexts.len());
    for ct in &file.ciphertexts {
        w.bytes(&ct.key_id().0);
        w.len32(ct.level());
        w.u64(ct.scale().to_bits());
        w.poly(&ct.c0);
        w.poly(&ct.c1);
    }
    w.into_bytes()
}

// ---------------------------------------------------------------- reading

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], FileError> {
        if len > self.bytes.len() {
            return Err(corrupt(format!(
                "the body ends inside {what} ({len} bytes needed, {} left)",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub(super) fn array<const K: usize>(&mut self, what: &str) -> Result<[u8; K], FileError> {
        let mut out = [0u8; K];
        out.copy_from_slice(self.take(K, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, FileError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, FileError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, FileError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FileError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u32` count or size, as `usize`.
    pub(super) fn len32(&mut self, what: &str) -> Result<usize, FileError> {
        usize::try_from(self.u32(what)?).map_err(|_| corrupt(format!("{what} does not fit in memory")))
    }

    fn flag(&mut self, what: &str) -> Result<bool, FileError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(corrupt(format!("{what} is {x}, expected 0 or 1"))),
        }
    }

    /// A count of items each at least `min_item` bytes long, checked against
    /// the bytes that remain.
    fn count(&mut self, min_item: usize, what: &str) -> Result<usize, FileError> {
        let count = self.len32(what)?;
        if count.checked_mul(min_item).is_none_or(|need| need > self.remaining()) {
            return Err(corrupt(format!(
                "{what} is {count}, more than the {} remaining bytes can hold",
                self.remaining()
            )));
        }
        Ok(count)
    }

    /// A polynomial over exactly `layout`, every word checked canonical.
    fn poly(&mut self, params: &Params, layout: LimbLayout, what: &str) -> Result<RnsPoly<Eval>, FileError> {
        self.poly_where(params, what, |found| {
            (found == layout)
                .then_some(())
                .ok_or_else(|| format!("expected {} + {}", layout.q, layout.p))
        })
    }

    /// A *poly* whose layout `accept` checks (an error names what it expected).
    fn poly_where(
        &mut self,
        params: &Params,
        what: &str,
        accept: impl FnOnce(LimbLayout) -> Result<(), String>,
    ) -> Result<RnsPoly<Eval>, FileError> {
        let q = self.len32(what)?;
        let p = self.len32(what)?;
        let layout = LimbLayout { q, p };
        accept(layout).map_err(|expected| corrupt(format!("{what} has {q} + {p} limbs, {expected}")))?;
        let n = params.n();
        let ring = params.ring();
        let words = layout.len() * n;
        let bytes = self.take(words * 4, what)?;
        let mut out = Vec::with_capacity(words);
        for (i, limb) in bytes.chunks_exact(n * 4).enumerate() {
            let prime = ring.modulus(layout, i).value();
            let start = out.len();
            out.extend(
                limb.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            if let Some(k) = out[start..].iter().position(|&x| x >= prime) {
                return Err(corrupt(format!(
                    "{what}: word {k} of limb {i} is {}, not below its prime {prime}",
                    out[start + k]
                )));
            }
        }
        Ok(RnsPoly::from_words(n, layout, out))
    }

    pub(super) fn end(&self) -> Result<(), FileError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{} unexpected bytes at the end of the body",
                self.bytes.len()
            )))
        }
    }
}

/// Reads and checks the fixed header (magic, version, kind byte, reserved
/// byte). Does not check the length or the checksum: it works on a prefix of
/// at least [`HEADER_LEN`] bytes, so tools can say what a damaged file was.
///
/// # Errors
/// [`FileError::NotLatentHe`], [`FileError::UnsupportedVersion`],
/// [`FileError::Truncated`] below the header length, [`FileError::Corrupt`]
/// for an unknown kind or a non-zero reserved byte.
pub fn peek_header(bytes: &[u8]) -> Result<FileHeader, FileError> {
    let truncated = |expected: usize| FileError::Truncated {
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            truncated(HEADER_LEN)
        } else {
            FileError::NotLatentHe
        });
    }
    if bytes[..8] != MAGIC {
        return Err(FileError::NotLatentHe);
    }
    if bytes.len() < 10 {
        return Err(truncated(HEADER_LEN));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(FileError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN));
    }
    let kind = FileKind::from_code(bytes[10]).ok_or_else(|| corrupt(format!("unknown file kind {}", bytes[10])))?;
    if bytes[11] != 0 {
        return Err(corrupt(format!("reserved header byte is {}, expected 0", bytes[11])));
    }
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&bytes[12..28]);
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&bytes[28..44]);
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&bytes[44..52]);
    Ok(FileHeader {
        version,
        kind,
        fingerprint,
        key_id: KeyId(key_id),
        body_len: u64::from_le_bytes(body_len),
    })
}

/// Checks a whole file: header, exact length, checksum, then the kind.
/// Returns the header and the body.
pub(super) fn open(bytes: &[u8], expected: FileKind) -> Result<(FileHeader, &[u8]), FileError> {
    // Damage to the kind or reserved bytes reads as a checksum error, so the
    // header is first parsed without judging them.
    let header = match peek_header(bytes) {
        Err(e @ FileError::Corrupt { .. }) => Err(e),
        Err(e) => return Err(e),
        Ok(h) => Ok(h),
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[44..52]);
    let body_len = u64::from_le_bytes(len);
    let total = body_len
        .checked_add((HEADER_LEN + CHECKSUM_LEN) as u64)
        .ok_or_else(|| corrupt(format!("body length {body_len} is impossible")))?;
    if (bytes.len() as u64) < total {
        return Err(FileError::Truncated {
            expected: total,
            found: bytes.len() as u64,
        });
    }
    if (bytes.len() as u64) > total {
        return Err(corrupt(format!(
            "{} bytes after the end announced by the header",
            bytes.len() as u64 - total
        )));
    }
    // `total` fits in usize since it is at most bytes.len().
    let end = total as usize - CHECKSUM_LEN;
    if blake3::hash(&bytes[..end]).as_bytes() != &bytes[end..] {
        return Err(FileError::ChecksumMismatch);
    }
    let header = header?;
    if header.kind != expected {
        return Err(FileError::WrongKind {
            expected,
            found: header.kind,
        });
    }
    Ok((header, &bytes[HEADER_LEN..end]))
}

/// Reads the parameter block and rebuilds the parameters. `min_rest(n,
/// limbs)` is the least number of bytes the rest of the body needs for a
/// ring of degree `n` with `limbs` primes in `Q ++ P`: checked before the
/// (costly) parameter tables are built.
fn read_params(
    r: &mut Reader<'_>,
    header: &FileHeader,
    min_rest: impl Fn(usize, usize) -> usize,
) -> Result<Arc<Params>, FileError> {
    let json_len = r.len32("the parameter length")?;
    if json_len > MAX_PARAMS_JSON {
        return Err(corrupt(format!("parameter block of {json_len} bytes is too long")));
    }
    let json = r.take(json_len, "the parameters")?;
    let literal: ParamsLiteral =
        serde_json::from_slice(json).map_err(|e| corrupt(format!("unreadable parameters: {e}")))?;
    let name = if r.flag("the preset flag")? {
        let len = usize::from(r.u16("the preset name length")?);
        if len > MAX_NAME {
            return Err(corrupt(format!("preset name of {len} bytes is too long")));
        }
        let bytes = r.take(len, "the preset name")?;
        Some(std::str::from_utf8(bytes).map_err(|_| corrupt("the preset name is not UTF-8"))?)
    } else {
        None
    };
    let primes = literal.log_q.len() + literal.log_p.len();
    if primes > MAX_PRIMES {
        return Err(corrupt(format!(
            "{primes} primes is more than the {MAX_PRIMES} accepted"
        )));
    }
    if LOG_N_RANGE.contains(&literal.log_n) {
        let need = min_rest(1usize << literal.log_n, primes);
        if need > r.remaining() {
            return Err(corrupt(format!(
                "the body is too short for its parameters ({need} bytes needed after them, {} left)",
                r.remaining()
            )));
        }
    }
    let params = match name {
        Some(name) => {
            let params = Params::preset(name)?;
            if *params.literal() != literal {
                return Err(corrupt(format!("the parameters differ from those of preset `{name}`")));
            }
            params
        }
        None => Params::new(literal, true)?,
    };
    if params.fingerprint() != header.fingerprint {
        return Err(corrupt(format!(
            "the stored parameters have fingerprint {}, the header says {}",
            params.fingerprint_hex(),
            hex(&header.fingerprint)
        )));
    }
    Ok(params)
}

/// Decodes a secret key from [`secret_key_to_bytes`] output.
///
/// # Errors
/// Any [`FileError`] but `Io`, `At` and `ParamsMismatch`: foreign, truncated,
/// damaged or invalid bytes are refused; never panics.
pub fn secret_key_from_bytes(bytes: &[u8]) -> Result<SecretKey, FileError> {
    let (header, body) = open(bytes, FileKind::SecretKey)?;
    let mut r = Reader { bytes: body };
    let params = read_params(&mut r, &header, |n, _| n / 4)?;
    let n = params.n();
    let packed = r.take(n / 4, "the secret coefficients")?;
    let mut coeffs = Vec::with_capacity(n);
    for (i, &byte) in packed.iter().enumerate() {
        for k in 0..4 {
            coeffs.push(match (byte >> (2 * k)) & 3 {
                0 => 0i8,
                1 => 1,
                2 => -1,
                _ => {
                    return Err(corrupt(format!(
                        "secret coefficient {} has the invalid code 3",
                        4 * i + k
                    )))
                }
            });
        }
    }
    r.end()?;
    Ok(SecretKey::from_parts(&params, header.key_id, coeffs))
}

fn read_b_and_seed(r: &mut Reader<'_>, params: &Params, what: &str) -> Result<(RnsPoly<Eval>, Seed), FileError> {
    let b = r.poly(params, params.ring().full_layout(), what)?;
    let seed = r.array::<32>(what)?;
    Ok((b, seed))
}

/// A switching key: its level is its first pair's (`q - 1`), every pair
/// has that layout, and the digit count is the parameters' at that level.
fn read_switching_key(r: &mut Reader<'_>, params: &Params, what: &str) -> Result<KeyParts, FileError> {
    let digits = r.len32(what)?;
    let (top, special) = (params.max_level() + 1, params.ring().p_count());
    let mut key_layout: Option<LimbLayout> = None;
    let mut pairs = Vec::new();
    for d in 0..digits {
        let label = format!("digit {d} of {what}");
        let b = r.poly_where(params, &label, |found| match key_layout {
            Some(first) if found != first => Err(format!("the key's first digit has {} + {}", first.q, first.p)),
            _ if found.q == 0 || found.q > top || found.p != special => Err(format!("expected 1..={top} + {special}")),
            _ => Ok(()),
        })?;
        let layout = *key_layout.get_or_insert(b.layout());
        if d == 0 {
            let expected = params.digits(layout.q - 1).len();
            if digits != expected {
                return Err(corrupt(format!(
                    "{what} has {digits} digits, the parameters have {expected} at its level {}",
                    layout.q - 1
                )));
            }
        }
        pairs.push((b, r.array::<32>(&label)?));
    }
    if digits == 0 {
        return Err(corrupt(format!("{what} has no digits")));
    }
    Ok(pairs)
}

fn expand(params: &Params, parts: KeyParts, memory: KeyMemory) -> Vec<SeededPair> {
    parts
        .into_par_iter()
        .map(|(b, seed)| SeededPair::from_seed(params, b, seed, memory))
        .collect()
}

/// A switching key as read from its file: each digit's `b` and seed of `a`.
type KeyParts = Vec<(RnsPoly<Eval>, Seed)>;

/// A public key set as read from its file: every `b` half and every seed,
/// the `a` halves not expanded.
struct PublicKeyParts {
    params: Arc<Params>,
    key_id: KeyId,
    public: (RnsPoly<Eval>, Seed),
    relin: Option<KeyParts>,
    galois: Vec<(u64, KeyParts)>,
    rotations: Vec<i64>,
}

/// Decodes a public key set from [`public_keys_to_bytes`] output,
/// re-expanding every `a` from its seed.
///
/// # Errors
/// Any [`FileError`] but `Io`, `At` and `ParamsMismatch`: foreign, truncated,
/// damaged or invalid bytes (including a Galois element that does not match
/// its rotation, or a repeated one) are refused; never panics.
pub fn public_keys_from_bytes(bytes: &[u8]) -> Result<PublicKeySet, FileError> {
    Ok(parse_public_keys(bytes)?.expand(KeyMemory::Expanded))
}

fn parse_public_keys(bytes: &[u8]) -> Result<PublicKeyParts, FileError> {
    let (header, body) = open(bytes, FileKind::PublicKeys)?;
    let mut r = Reader { bytes: body };
    let params = read_params(&mut r, &header, |n, limbs| 8 + limbs * n * 4 + 32)?;
    let n = params.n();
    let public = read_b_and_seed(&mut r, &params, "the public key")?;
    let relin = if r.flag("the relinearization flag")? {
        Some(read_switching_key(&mut r, &params, "the relinearization key")?)
    } else {
        None
    };
    let smallest_key = LimbLayout {
        q: 1,
        p: params.ring().p_count(),
    };
    let min_galois = 8 + 8 + 4 + poly_bytes(smallest_key, n) + 32;
    let count = r.count(min_galois, "the Galois key count")?;
    let mut rotations = Vec::new();
    let mut galois_parts = Vec::new();
    for k in 0..count {
        let g = r.u64("a Galois element")?;
        let steps = r.u64("a rotation")? as i64;
        let expected = rotation_galois_element(steps, n);
        if g != expected || g == 1 {
            return Err(corrupt(format!(
                "Galois key {k}: element {g} does not rotate by {steps} (that is element {expected})"
            )));
        }
        if galois_parts.iter().any(|(h, _)| *h == g) {
            return Err(corrupt(format!("Galois key {k}: element {g} appears twice")));
        }
        galois_parts.push((g, read_switching_key(&mut r, &params, &format!("Galois key {k}"))?));
        rotations.push(steps);
    }
    r.end()?;
    Ok(PublicKeyParts {
        params,
        key_id: header.key_id,
        public,
        relin,
        galois: galois_parts,
        rotations,
    })
}

impl PublicKeyParts {
    /// The key set, its evaluation keys' `a` halves held as `memory` says
    /// (the public key's expanded).
    fn expand(self, memory: KeyMemory) -> PublicKeySet {
        let Self {
            params,
            key_id,
            public,
            relin,
            galois,
            rotations,
        } = self;
        let public = PublicKey {
            pair: SeededPair::from_seed(&params, public.0, public.1, KeyMemory::Expanded),
        };
        let relin = relin.map(|parts| SwitchingKey {
            digits: expand(&params, parts, memory),
        });
        let galois: BTreeMap<u64, SwitchingKey> = galois
            .into_iter()
            .map(|(g, parts)| {
                (
                    g,
                    SwitchingKey {
                        digits: expand(&params, parts, memory),
                    },
                )
            })
            .collect();
        PublicKeySet {
            params,
            id: key_id,
            public,
            relin,
            galois,
            rotations,
        }
    }
}

/// Decodes ciphertexts from [`ciphertexts_to_bytes`] output, for the
/// parameters `params` (which the file must have been made with).
/// The caller checks the ciphertexts' key against its key
/// ([`CiphertextFile::key_id`]); decryption also refuses another key.
///
/// # Errors
/// [`FileError::ParamsMismatch`] when the file was made with other
/// parameters; otherwise as [`secret_key_from_bytes`]; never panics.
pub fn ciphertexts_from_bytes(bytes: &[u8], params: &Arc<Params>) -> Result<CiphertextFile, FileError> {
    let (header, body) = open(bytes, FileKind::Ciphertexts)?;
    if header.fingerprint != params.fingerprint() {
        return Err(FileError::ParamsMismatch {
            expected: params.fingerprint_hex(),
            found: hex(&header.fingerprint),
        });
    }
    let mut r = Reader { bytes: body };
    let n = params.n();
    let rank = r.count(8, "the shape rank")?;
    let shape = (0..rank)
        .map(|_| {
            let d = r.u64("the shape")?;
            usize::try_from(d).map_err(|_| corrupt(format!("dimension {d} does not fit in memory")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let values = r.u64("the value count")?;
    let min_ct = 16 + 4 + 8 + 2 * poly_bytes(LimbLayout::q_only(1), n);
    let count = r.count(min_ct, "the ciphertext count")?;
    let capacity = count as u64 * params.slots() as u64;
    if values > capacity {
        return Err(corrupt(format!(
            "{values} values do not fit in {count} ciphertexts of {} slots",
            params.slots()
        )));
    }
    let mut ciphertexts = Vec::with_capacity(count);
    for k in 0..count {
        let key_id = KeyId(r.array::<16>("a ciphertext key")?);
        let level = r.len32("a ciphertext level")?;
        if level > params.max_level() {
            return Err(corrupt(format!(
                "ciphertext {k} is at level {level}, the parameters stop at {}",
                params.max_level()
            )));
        }
        let scale = f64::from_bits(r.u64("a ciphertext scale")?);
        // Every ciphertext this library writes is at its level's canonical
        // scale (up to the ulps of tracking it as a product of primes); any
        // other decrypts to values off by the ratio, or to inf/NaN.
        let canonical = params.scale(level);
        if !scale.is_finite() || check_scales(scale, canonical).is_err() {
            return Err(corrupt(format!(
                "ciphertext {k} has the scale {scale:e}; level {level}'s is {canonical:e}"
            )));
        }
        let layout = params.layout(level);
        let c0 = r.poly(params, layout, &format!("c0 of ciphertext {k}"))?;
        let c1 = r.poly(params, layout, &format!("c1 of ciphertext {k}"))?;
        ciphertexts.push(Ciphertext { c0, c1, scale, key_id });
    }
    r.end()?;
    if let Some(first) = ciphertexts.first() {
        if first.key_id != header.key_id {
            return Err(corrupt("the header's key differs from the first ciphertext's"));
        }
    }
    Ok(CiphertextFile {
        shape,
        // values <= capacity, a product of two usize values... in u64; the
        // ciphertexts exist in memory, so it fits.
        values: usize::try_from(values).map_err(|_| corrupt("the value count does not fit in memory"))?,
        ciphertexts,
    })
}

// ---------------------------------------------------------------- files

/// A temporary name beside `path` that no other writer (process or
/// thread) picks: `path.PID.RANDOM.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
    PathBuf::from(s)
}

/// Writes `bytes` to a temporary file of its own beside `path`
/// ([`tmp_path`]), syncs it and renames it over `path`, so that `path` is
/// either the old file or one complete new one, however many writers race
/// on it. `secret` files are created readable by their owner only (unix).
pub(super) fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), FileError> {
    write_atomic_with(path, secret, |file| file.write_all(bytes))
}

/// [`write_atomic`] of what `write` puts into the file (in large writes:
/// the file is not buffered).
fn write_atomic_with(
    path: &Path,
    secret: bool,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let tmp = tmp_path(path);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| FileError::Io { path: p, source }
    };
    // A fresh name, created here: no other file's permissions carry over.
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o666 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let result = (|| {
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        write(&mut file).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else if let Some(dir) = path.parent() {
        // Make the rename durable; not every platform can sync a directory.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    result
}

/// Largest key or ciphertext file read into memory (the public key set is
/// mapped instead, whatever its size).
pub const MAX_READ_BYTES: u64 = 64 << 30;

/// The regular file at `path`, read whole (at most [`MAX_READ_BYTES`]; a
/// directory or a device is refused before a byte is read).
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    crate::bounded::read_regular(path, MAX_READ_BYTES).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the secret key to `path` atomically (via a temporary file of its own), readable by
/// its owner only on unix.
///
/// # Errors
/// [`FileError::Io`] naming the path.
pub fn save_secret_key(path: &Path, sk: &SecretKey) -> Result<(), FileError> {
    write_atomic(path, &secret_key_to_bytes(sk), true)
}

/// Reads a secret key file.
///
/// # Errors
/// As [`secret_key_from_bytes`], wrapped in [`FileError::At`] with the path,
/// or [`FileError::Io`].
pub fn load_secret_key(path: &Path) -> Result<SecretKey, FileError> {
    secret_key_from_bytes(&read_file(path)?).map_err(|e| e.at(path))
}

/// Writes the public key set to `path` atomically (via a temporary file of its own).
///
/// # Errors
/// [`FileError::Io`] naming the path.
pub fn save_public_keys(path: &Path, keys: &PublicKeySet) -> Result<(), FileError> {
    write_atomic_with(path, false, |sink| write_public_keys(sink, keys))
}

/// Reads a public key set file, every `a` half expanded.
///
/// # Errors
/// As [`public_keys_from_bytes`], wrapped in [`FileError::At`] with the
/// path, or [`FileError::Io`].
pub fn load_public_keys(path: &Path) -> Result<PublicKeySet, FileError> {
    load_public_keys_as(path, KeyMemory::Expanded)
}

/// The parameters of a public key set file, read from its parameter block
/// only (to plan before loading the keys), after the file's length and
/// checksum are checked: nothing is built from a damaged or truncated file.
///
/// # Errors
/// As [`load_public_keys`] for a file whose header, length, checksum or
/// parameter block is wrong.
pub fn public_keys_params(path: &Path) -> Result<Arc<Params>, FileError> {
    let bytes = map_file(path)?;
    let (header, body) = open(&bytes, FileKind::PublicKeys).map_err(|e| e.at(path))?;
    let mut r = Reader { bytes: body };
    read_params(&mut r, &header, |n, limbs| 8 + limbs * n * 4 + 32).map_err(|e| e.at(path))
}

/// The file at `path`, mapped read-only.
fn map_file(path: &Path) -> Result<memmap2::Mmap, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, _) = crate::bounded::open_regular(path).map_err(io)?;
    // SAFETY: the map is only read, by the caller that holds it; the files
    // of this library are replaced by rename, never rewritten in place, and
    // a file changed by someone else under the map is caught by the
    // checksum or the parser's checks (its bytes are plain data).
    unsafe { memmap2::Mmap::map(&file) }.map_err(io)
}

/// Reads a public key set file, holding the evaluation keys' `a` halves as
/// `memory` says. The file is mapped, not read into memory: its pages are
/// the kernel's to drop, so the peak is the keys as held, not the keys plus
/// their file.
///
/// # Errors
/// As [`load_public_keys`].
pub fn load_public_keys_as(path: &Path, memory: KeyMemory) -> Result<PublicKeySet, FileError> {
    let map = map_file(path)?;
    let parts = parse_public_keys(&map).map_err(|e| e.at(path))?;
    drop(map);
    Ok(parts.expand(memory))
}

/// Writes ciphertexts made under `params` to `path` atomically (via a
/// temporary file of its own).
///
/// # Errors
/// [`FileError::Io`] naming the path.
pub fn save_ciphertexts(path: &Path, file: &CiphertextFile, params: &Params) -> Result<(), FileError> {
    write_atomic(path, &ciphertexts_to_bytes(file, params), false)
}

/// Reads a ciphertext file made under `params`.
///
/// # Errors
/// As [`ciphertexts_from_bytes`], wrapped in [`FileError::At`] with the
/// path, or [`FileError::Io`].
pub fn load_ciphertexts(path: &Path, params: &Arc<Params>) -> Result<CiphertextFile, FileError> {
    ciphertexts_from_bytes(&read_file(path)?, params).map_err(|e| e.at(path))
}
