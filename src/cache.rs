//! Where latent-he keeps what it can rebuild: compiled GPU pipelines and the
//! keys `run` generates per model and preset.

use std::path::PathBuf;

/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "LATENT_HE_CACHE_DIR";

/// `$LATENT_HE_CACHE_DIR`, else the platform's cache directory for
/// `latent-he` ([`directories::ProjectDirs`]: `$XDG_CACHE_HOME/latent-he` or
/// `~/.cache/latent-he` on Linux, `~/Library/Caches/latent-he` on macOS,
/// `%LOCALAPPDATA%\latent-he\cache` on Windows); `None` when no home
/// directory is known.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| directories::ProjectDirs::from("", "", "latent-he").map(|dirs| dirs.cache_dir().to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The override wins; without it, Linux keeps the XDG path that caches
    /// made before were written to.
    #[test]
    fn override_then_platform_directory() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
        match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) => assert_eq!(cache_dir(), Some(PathBuf::from(dir))),
            None if cfg!(target_os = "linux") => {
                let want = xdg
                    .filter(|d| d.is_absolute())
                    .map(|d| d.join("latent-he"))
                    .or_else(|| home.map(|h| h.join(".cache/latent-he")));
                assert_eq!(cache_dir(), want);
            }
            None => assert!(cache_dir().is_some_and(|d| d.ends_with("latent-he") || d.ends_with("cache"))),
        }
    }
}
