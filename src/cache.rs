//! Where latent-he keeps what it can rebuild: compiled GPU pipelines and the
//! keys `run` generates per model and preset.

use std::path::PathBuf;

/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "LATENT_HE_CACHE_DIR";

/// `$LATENT_HE_CACHE_DIR`, else `$XDG_CACHE_HOME/latent-he`, else
/// `~/.cache/latent-he`; `None` when none of them is set.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("latent-he")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/latent-he")))
}
