//! Bearer tokens: `latent-he token new` makes one, prints it once and keeps
//! only its BLAKE3 hash in the tokens file; the server maps a presented
//! token to the owner name it was made for.
//!
//! The file holds one JSON object per line, `{"name": ..., "blake3": ...}`.
//! A token is `lhe_` and 64 hex digits (256 bits from the OS's CSPRNG), so
//! a fast hash is enough: nothing short enough to guess is ever stored.

use super::ServiceError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Longest tokens file read.
const MAX_TOKENS_FILE_BYTES: u64 = 4 << 20;
/// Longest owner name.
const MAX_NAME_LEN: usize = 64;
/// What every token starts with.
const TOKEN_PREFIX: &str = "lhe_";

/// One line of the tokens file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    /// The owner: names its keys and jobs; `[A-Za-z0-9_.-]`, 1 to 64 characters.
    name: String,
    /// BLAKE3 of the token, 64 lowercase hex digits.
    blake3: String,
}

/// The tokens a server accepts.
///
/// Invariant: names are valid ([`valid_owner_name`]) and unique; hashes are
/// 64 lowercase hex digits.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// Whether `name` may name an owner: 1 to 64 of `[A-Za-z0-9_.-]`, not
/// starting with a dot (it names a folder of the state directory).
pub fn valid_owner_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

impl Tokens {
    /// Reads the tokens file at `path`; a missing file is no token.
    ///
    /// # Errors
    /// An unreadable or oversized file, a line that is not a token entry, an
    /// invalid or repeated name, a malformed hash.
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let bytes = crate::bounded::read_regular(path, MAX_TOKENS_FILE_BYTES).map_err(ServiceError::io(path))?;
        let invalid = |line: usize, reason: String| ServiceError::Invalid {
            path: path.display().to_string(),
            reason: format!("line {line}: {reason}"),
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| invalid(0, e.to_string()))?;
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry: TokenEntry = serde_json::from_str(line).map_err(|e| invalid(i + 1, e.to_string()))?;
            if !valid_owner_name(&entry.name) {
                return Err(invalid(i + 1, format!("invalid name {:?}", entry.name)));
            }
            if entry.blake3.len() != 64 || !entry.blake3.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(invalid(i + 1, "the hash is not 64 lowercase hex digits".into()));
            }
            if entries.iter().any(|e| e.name == entry.name) {
                return Err(invalid(i + 1, format!("name {:?} appears twice", entry.name)));
            }
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// Makes a token for `name`, adds its hash to the file at `path`
    /// (created with owner-only permissions) and returns the token, which
    /// is stored nowhere else.
    ///
    /// # Errors
    /// An invalid name, a name the file already has, the file unreadable
    /// or unwritable.
    pub fn add(path: &Path, name: &str) -> Result<String, ServiceError> {
        if !valid_owner_name(name) {
            return Err(ServiceError::Config(format!(
                "invalid token name {name:?}: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ . -, not starting with a dot"
            )));
        }
        let tokens = Self::load(path)?;
        if tokens.entries.iter().any(|e| e.name == name) {
            return Err(ServiceError::Config(format!(
                "{} already has a token named {name:?}",
                path.display()
            )));
        }
        let token = format!("{TOKEN_PREFIX}{}", super::random_hex(32));
        let entry = TokenEntry {
            name: name.to_string(),
            blake3: hash_token(&token),
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(ServiceError::io(path))?;
        let line = serde_json::to_string(&entry).expect("a token entry serializes");
        writeln!(file, "{line}")
            .and_then(|()| file.sync_all())
            .map_err(ServiceError::io(path))?;
        Ok(token)
    }

    /// The owner `token` was made for, if any. The comparison is of hashes
    /// in constant time.
    pub fn owner(&self, token: &str) -> Option<&str> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let presented = blake3::hash(token.as_bytes());
        self.entries
            .iter()
            .find(|e| blake3::Hash::from_hex(&e.blake3).is_ok_and(|h| h == presented))
            .map(|e| e.name.as_str())
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_maps_to_its_name_and_only_its_hash_is_stored() {
        let dir = std::env::temp_dir().join(format!("latent-he-tokens-{}", super::super::random_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let a = Tokens::add(&path, "alice").unwrap();
        let b = Tokens::add(&path, "bob").unwrap();
        assert_ne!(a, b);
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.owner(&a), Some("alice"));
        assert_eq!(tokens.owner(&b), Some("bob"));
        assert_eq!(tokens.owner("lhe_00"), None);
        assert_eq!(tokens.owner(&a[..a.len() - 1]), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a[4..]) && !text.contains(&b[4..]), "{text}");
        assert!(Tokens::add(&path, "alice").is_err(), "a repeated name");
        assert!(Tokens::add(&path, "../x").is_err(), "a path as a name");
        std::fs::write(&path, "{\"name\": \"x\", \"blake3\": \"zz\"}\n").unwrap();
        assert!(Tokens::load(&path).is_err(), "a malformed hash");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
