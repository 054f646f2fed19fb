//! The state directory of `latent-he serve`:
//!
//! ```text
//! STATE/keys/<key id>/public.key   a registered public key set
//! STATE/keys/<key id>/key.json     its owner, model, batch, size (written last)
//! STATE/jobs/<job id>/input.ct     the uploaded ciphertexts
//! STATE/jobs/<job id>/job.json     the job's record (replaced atomically)
//! STATE/jobs/<job id>/output.ct    the encrypted logits, once done
//! STATE/uploads/                   bodies being received (emptied at start)
//! ```
//!
//! A key folder without `key.json` or a job folder without `job.json` was
//! being made when the process stopped; opening the store removes it.
//! Nothing here is secret: public keys and ciphertexts only.

use super::ServiceError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Longest record file read.
const MAX_RECORD_BYTES: u64 = 1 << 20;
/// File name of a registered key set inside its folder.
pub const KEY_FILE: &str = "public.key";
/// File name of a key's record.
const KEY_RECORD: &str = "key.json";
/// File name of a job's record.
const JOB_RECORD: &str = "job.json";
/// File name of a job's input ciphertexts.
pub const JOB_INPUT: &str = "input.ct";
/// File name of a job's output ciphertexts.
pub const JOB_OUTPUT: &str = "output.ct";

/// A registered public key set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// BLAKE3 of the key file (32 hex digits): the handle clients use.
    pub id: String,
    /// The token name that registered it; only it may use the key.
    pub owner: String,
    /// The served model the keys were checked against.
    pub model: String,
    /// Images per set of ciphertexts the keys were made for.
    pub batch: usize,
    /// The parameter preset of the keys.
    pub preset: String,
    /// Size of the key file.
    pub bytes: u64,
    /// When it was registered (seconds since the Unix epoch).
    pub created_unix: u64,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// Whether `id` is a handle this store makes (hex, 16 to 64 digits), so
/// that it can name a folder.
pub fn valid_id(id: &str) -> bool {
    (16..=64).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// Opens (creating) the state directory at `root`, empties its uploads
    /// and removes folders left half-made.
    ///
    /// # Errors
    /// A directory that cannot be created or read.
    pub fn open(root: &Path) -> Result<Self, ServiceError> {
        let store = Self {
            root: root.to_path_buf(),
        };
        for dir in ["keys", "jobs", "uploads"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(ServiceError::io(&path))?;
        }
        let uploads = root.join("uploads");
        for entry in std::fs::read_dir(&uploads).map_err(ServiceError::io(&uploads))? {
            let path = entry.map_err(ServiceError::io(&uploads))?.path();
            std::fs::remove_file(&path).map_err(ServiceError::io(&path))?;
        }
        for (dir, record) in [("keys", KEY_RECORD), ("jobs", JOB_RECORD)] {
            for folder in store.folders(dir)? {
                if !folder.join(record).exists() {
                    std::fs::remove_dir_all(&folder).map_err(ServiceError::io(&folder))?;
                }
            }
        }
        Ok(store)
    }

    fn folders(&self, dir: &str) -> Result<Vec<PathBuf>, ServiceError> {
        let path = self.root.join(dir);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(ServiceError::io(&path))? {
            let entry = entry.map_err(ServiceError::io(&path))?;
            if entry.file_name().to_str().is_some_and(valid_id) && entry.path().is_dir() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// A fresh path under `uploads/` for a body being received.
    pub fn upload_path(&self) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("{}.part", super::random_hex(16)))
    }

    /// The folder of key `id`.
    pub fn key_dir(&self, id: &str) -> PathBuf {
        self.root.join("keys").join(id)
    }

    /// The folder of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join("jobs").join(id)
    }

    /// Every registered key.
    ///
    /// # Errors
    /// An unreadable folder or record.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, ServiceError> {
        self.folders("keys")?
            .iter()
            .map(|dir| read_record(&dir.join(KEY_RECORD)))
            .collect()
    }

    /// Every job record.
    ///
    /// # Errors
    /// An unreadable folder or record.
    pub fn jobs<T: DeserializeOwned>(&self) -> Result<Vec<T>, ServiceError> {
        self.folders("jobs")?
            .iter()
            .map(|dir| read_record(&dir.join(JOB_RECORD)))
            .collect()
    }

    /// Registers the key file at `upload` (already checked) as `record`:
    /// moves it into its folder, then writes the record. Returns `false`
    /// (and removes the upload) when the key was registered already.
    ///
    /// # Errors
    /// A file that cannot be moved or written.
    pub fn add_key(&self, upload: &Path, record: &KeyRecord) -> Result<bool, ServiceError> {
        let dir = self.key_dir(&record.id);
        if dir.join(KEY_RECORD).exists() {
            std::fs::remove_file(upload).map_err(ServiceError::io(upload))?;
            return Ok(false);
        }
        std::fs::create_dir_all(&dir).map_err(ServiceError::io(&dir))?;
        let file = dir.join(KEY_FILE);
        std::fs::rename(upload, &file).map_err(ServiceError::io(&file))?;
        write_record(&dir.join(KEY_RECORD), record)?;
        Ok(true)
    }

    /// Removes key `id` and its folder.
    ///
    /// # Errors
    /// A folder that cannot be removed.
    pub fn remove_key(&self, id: &str) -> Result<(), ServiceError> {
        let dir = self.key_dir(id);
        std::fs::remove_dir_all(&dir).map_err(ServiceError::io(&dir))
    }

    /// Makes job `id`'s folder with `upload` as its input and `record`.
    ///
    /// # Errors
    /// A file that cannot be moved or written.
    pub fn add_job<T: Serialize>(&self, id: &str, upload: &Path, record: &T) -> Result<(), ServiceError> {
        let dir = self.job_dir(id);
        std::fs::create_dir_all(&dir).map_err(ServiceError::io(&dir))?;
        let input = dir.join(JOB_INPUT);
        std::fs::rename(upload, &input).map_err(ServiceError::io(&input))?;
        self.save_job(id, record)
    }

    /// Replaces job `id`'s record atomically.
    ///
    /// # Errors
    /// A record that cannot be written.
    pub fn save_job<T: Serialize>(&self, id: &str, record: &T) -> Result<(), ServiceError> {
        write_record(&self.job_dir(id).join(JOB_RECORD), record)
    }
}

fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T, ServiceError> {
    let bytes = crate::bounded::read_regular(path, MAX_RECORD_BYTES).map_err(ServiceError::io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| ServiceError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes `record` as JSON to `path` through a uniquely named temporary
/// file, synced, then renamed over it.
fn write_record<T: Serialize>(path: &Path, record: &T) -> Result<(), ServiceError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", super::random_hex(8)));
    let json = serde_json::to_vec_pretty(record).expect("records serialize");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ServiceError::Io {
            path: path.display().to_string(),
            source,
        }
    })
}
