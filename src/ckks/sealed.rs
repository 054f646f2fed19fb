//! Secret keys encrypted under a passphrase, so that a stolen key folder
//! alone does not open the results.
//!
//! # Format (kind 4 of the [`super::serialize`] files)
//!
//! The header is the common one (kind byte 4) with the key's parameter
//! fingerprint and key identifier. The body:
//!
//! | size | field                                                          |
//! |-----:|----------------------------------------------------------------|
//! | 1    | key derivation: 1 = Argon2id, version 0x13                     |
//! | 4    | memory cost in KiB (`u32`, at most [`MAX_M_COST_KIB`])         |
//! | 4    | time cost, passes (`u32`, 1 ..= [`MAX_T_COST`])                |
//! | 4    | parallelism (`u32`, 1 ..= [`MAX_P_COST`])                      |
//! | 16   | salt, random from the operating system                         |
//! | 1    | cipher: 1 = ChaCha20-Poly1305 (RFC 8439)                       |
//! | 12   | nonce, random from the operating system                        |
//! | 4    | length `S` of the sealed bytes (`u32`, the rest of the body)   |
//! | S    | the whole kind-1 secret key file, encrypted, with its 16-byte tag |
//!
//! The 32-byte cipher key is Argon2id of the passphrase with the salt and
//! costs above. The associated data is the file's first 52 + 46 bytes (the
//! header and every body field before the sealed bytes), so a changed
//! header, cost, salt or nonce fails authentication like a wrong
//! passphrase. The decrypted bytes must be a valid secret key file whose
//! fingerprint and key identifier are the outer header's.
//!
//! The costs written are Argon2's defaults (19 MiB, 2 passes, 1 lane, the
//! OWASP minimum for Argon2id); a loader refuses costs above the caps
//! before deriving anything, so a crafted file cannot make it allocate
//! more than [`MAX_M_COST_KIB`] KiB (256 MiB) or pass over it more than
//! [`MAX_T_COST`] times (a few seconds).

use super::keys::SecretKey;
use super::serialize::{
    corrupt, open, peek_header, read_file, secret_key_from_bytes, secret_key_to_bytes, write_atomic, FileError,
    FileKind, Reader, Writer, HEADER_LEN,
};
use argon2::{Algorithm, Argon2, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest Argon2 memory cost a loader accepts: 256 MiB.
pub const MAX_M_COST_KIB: u32 = 1 << 18;
/// Largest Argon2 time cost a loader accepts.
pub const MAX_T_COST: u32 = 16;
/// Largest Argon2 parallelism a loader accepts.
pub const MAX_P_COST: u32 = 8;
/// Longest passphrase accepted, in bytes.
pub const MAX_PASSPHRASE: usize = 1024;

const KDF_ARGON2ID: u8 = 1;
const CIPHER_CHACHA20POLY1305: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// Body bytes before the sealed bytes.
const PREFIX_LEN: usize = 1 + 4 + 4 + 4 + SALT_LEN + 1 + NONCE_LEN + 4;

/// A passphrase, wiped from memory when dropped.
///
/// Invariant: 1 ..= [`MAX_PASSPHRASE`] bytes.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// A passphrase of these bytes.
    ///
    /// # Errors
    /// [`FileError::Passphrase`] when empty or longer than
    /// [`MAX_PASSPHRASE`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, FileError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.is_empty() {
            return Err(FileError::Passphrase {
                reason: "it is empty".into(),
            });
        }
        if bytes.len() > MAX_PASSPHRASE {
            return Err(FileError::Passphrase {
                reason: format!("longer than {MAX_PASSPHRASE} bytes"),
            });
        }
        Ok(Self(bytes))
    }

    /// The passphrase in the file at `path`: its bytes without one final
    /// line ending (`\n` or `\r\n`).
    ///
    /// # Errors
    /// [`FileError::Io`] for a file that cannot be read (or is not a
    /// regular file); [`FileError::At`] wrapping [`FileError::Passphrase`]
    /// when what is left is empty or too long.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let mut bytes = Zeroizing::new(crate::bounded::read_regular(path, MAX_PASSPHRASE as u64 + 2).map_err(
            |source| FileError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?);
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Self::new(std::mem::take(&mut *bytes)).map_err(|e| e.at(path))
    }
}

/// The cipher of `passphrase` under Argon2id with `salt` and the costs.
fn cipher(passphrase: &Passphrase, salt: &[u8], (m, t, p): (u32, u32, u32)) -> Result<ChaCha20Poly1305, FileError> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| corrupt(format!("key derivation costs: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(&passphrase.0, salt, &mut *key)
        .map_err(|e| corrupt(format!("key derivation: {e}")))?;
    Ok(ChaCha20Poly1305::new(Key::from_slice(&*key)))
}

/// Encodes `sk` encrypted under `passphrase` (format in the
/// [module docs](self)), with a fresh salt and nonce from the operating
/// system and Argon2's default costs.
pub fn sealed_secret_key_to_bytes(sk: &SecretKey, passphrase: &Passphrase) -> Vec<u8> {
    let inner = Zeroizing::new(secret_key_to_bytes(sk));
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let costs = (
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST,
    );
    let sealed_len = inner.len() + 16;
    let mut w = Writer::new(
        FileKind::SealedSecretKey,
        sk.params().fingerprint(),
        sk.id(),
        PREFIX_LEN + sealed_len,
    );
    w.u8(KDF_ARGON2ID);
    w.u32(costs.0);
    w.u32(costs.1);
    w.u32(costs.2);
    w.bytes(&salt);
    w.u8(CIPHER_CHACHA20POLY1305);
    w.bytes(&nonce);
    w.len32(sealed_len);
    let mut file = w.into_bytes();
    // The writer appended the checksum of an empty sealed part: drop it,
    // append the sealed bytes, then seal the length and checksum again.
    file.truncate(HEADER_LEN + PREFIX_LEN);
    let body_len = (PREFIX_LEN + sealed_len) as u64;
    file[44..52].copy_from_slice(&body_len.to_le_bytes());
    let sealed = cipher(passphrase, &salt, costs)
        .expect("the default costs are valid")
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &inner,
                aad: &file,
            },
        )
        .expect("a secret key is far below ChaCha20-Poly1305's message limit");
    debug_assert_eq!(sealed.len(), sealed_len);
    file.extend_from_slice(&sealed);
    let hash = blake3::hash(&file);
    file.extend_from_slice(hash.as_bytes());
    file
}

/// Decodes a secret key from [`sealed_secret_key_to_bytes`] output.
///
/// # Errors
/// As [`secret_key_from_bytes`] for the outer file (foreign, truncated,
/// damaged bytes; unknown key derivation or cipher; costs past the caps);
/// [`FileError::WrongPassphrase`] when authentication fails; never panics.
pub fn sealed_secret_key_from_bytes(bytes: &[u8], passphrase: &Passphrase) -> Result<SecretKey, FileError> {
    let (header, body) = open(bytes, FileKind::SealedSecretKey)?;
    let mut r = Reader { bytes: body };
    let kdf = r.u8("the key derivation")?;
    if kdf != KDF_ARGON2ID {
        return Err(corrupt(format!("unknown key derivation {kdf}")));
    }
    let m = r.u32("the memory cost")?;
    let t = r.u32("the time cost")?;
    let p = r.u32("the parallelism")?;
    if m > MAX_M_COST_KIB || !(1..=MAX_T_COST).contains(&t) || !(1..=MAX_P_COST).contains(&p) {
        return Err(corrupt(format!(
            "key derivation costs {m} KiB, {t} passes, {p} lanes past the caps \
             ({MAX_M_COST_KIB} KiB, {MAX_T_COST} passes, {MAX_P_COST} lanes)"
        )));
    }
    let salt = r.array::<SALT_LEN>("the salt")?;
    let algorithm = r.u8("the cipher")?;
    if algorithm != CIPHER_CHACHA20POLY1305 {
        return Err(corrupt(format!("unknown cipher {algorithm}")));
    }
    let nonce = r.array::<NONCE_LEN>("the nonce")?;
    let sealed_len = r.len32("the sealed length")?;
    let sealed = r.take(sealed_len, "the sealed key")?;
    r.end()?;
    let aad = &bytes[..HEADER_LEN + PREFIX_LEN];
    let inner = Zeroizing::new(
        cipher(passphrase, &salt, (m, t, p))?
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: sealed, aad })
            .map_err(|_| FileError::WrongPassphrase)?,
    );
    let sk = secret_key_from_bytes(&inner).map_err(|e| corrupt(format!("the decrypted secret key: {e}")))?;
    if sk.id() != header.key_id || sk.params().fingerprint() != header.fingerprint {
        return Err(corrupt("the decrypted secret key is not the one the header names"));
    }
    Ok(sk)
}

/// Writes `sk` encrypted under `passphrase` to `path` atomically, readable
/// by its owner only on unix.
///
/// # Errors
/// [`FileError::Io`] naming the path.
pub fn save_sealed_secret_key(path: &Path, sk: &SecretKey, passphrase: &Passphrase) -> Result<(), FileError> {
    write_atomic(path, &sealed_secret_key_to_bytes(sk, passphrase), true)
}

/// Reads a secret key file, plain (kind 1) or encrypted under a passphrase
/// (kind 4). A passphrase given for a plain key is not used.
///
/// # Errors
/// [`FileError::PassphraseRequired`] for an encrypted key without
/// `passphrase`; otherwise as [`secret_key_from_bytes`] and
/// [`sealed_secret_key_from_bytes`], wrapped in [`FileError::At`] with the
/// path, or [`FileError::Io`].
pub fn load_secret_key_with(path: &Path, passphrase: Option<&Passphrase>) -> Result<SecretKey, FileError> {
    let bytes = Zeroizing::new(read_file(path)?);
    let sealed = peek_header(&bytes).is_ok_and(|h| h.kind == FileKind::SealedSecretKey);
    match (sealed, passphrase) {
        (true, Some(passphrase)) => sealed_secret_key_from_bytes(&bytes, passphrase),
        (true, None) => Err(FileError::PassphraseRequired),
        (false, _) => secret_key_from_bytes(&bytes),
    }
    .map_err(|e| e.at(path))
}
