//! Reading files that come from outside: regular files only (a directory, a
//! FIFO or a device such as `/dev/zero` is refused before a byte is read),
//! never more bytes than a cap the caller documents, and never more than the
//! length the file had when it was opened. And checking, before a long
//! computation, that its output can be written.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Opens `path` for reading and returns it with its length.
///
/// # Errors
/// The system's error, or [`io::ErrorKind::InvalidInput`] when `path` is not
/// a regular file (after following links).
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: expected a regular file"),
        ));
    }
    Ok((file, meta.len()))
}

/// The whole content of the regular file at `path`, refused when it is
/// longer than `cap` bytes. Reads at most the length the file had when it
/// was opened (plus one byte to notice growth), so a file that grows while it
/// is read cannot exhaust memory.
///
/// # Errors
/// As [`open_regular`]; [`io::ErrorKind::InvalidData`] for a file over
/// `cap` bytes or one that changed length while it was read.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes is more than the {cap} accepted here"),
        ));
    }
    // `len <= cap`, and a cap is chosen to fit in memory.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file changed length while it was read",
        ));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
///
/// # Errors
/// As [`read_regular`]; [`io::ErrorKind::InvalidData`] for text that is not
/// UTF-8.
pub fn read_regular_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Checks that a file can be written at `path` (by the atomic writers:
/// through `path.tmp`, renamed over `path`): `path` is not a directory and a
/// file can be created beside it. Leaves nothing behind.
///
/// # Errors
/// The system's error for the probe, or [`io::ErrorKind::InvalidInput`] for
/// a directory.
pub fn probe_writable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a directory: expected a file name to write",
        ));
    }
    let mut probe = path.as_os_str().to_owned();
    probe.push(".tmp");
    let probe = std::path::PathBuf::from(probe);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .or_else(|e| match e.kind() {
            // A stale temporary file of an interrupted write: the writer
            // replaces it, so it proves the folder writable if it opens.
            io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new().write(true).open(&probe),
            _ => Err(e),
        })?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_devices_are_refused_before_reading() {
        let dir = std::env::temp_dir();
        let e = read_regular(&dir, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn unwritable_outputs_are_found_before_writing() {
        let dir = std::env::temp_dir().join(format!("latent-he-probe-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        probe_writable(&dir.join("out.ct")).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe is removed");
        assert!(probe_writable(&dir).is_err(), "a directory");
        assert!(probe_writable(&dir.join("missing/out.ct")).is_err(), "no such folder");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let path = std::env::temp_dir().join(format!("latent-he-bounded-{}", rand::random::<u64>()));
        std::fs::write(&path, [7u8; 100]).unwrap();
        assert_eq!(read_regular(&path, 100).unwrap(), vec![7u8; 100]);
        let e = read_regular(&path, 99).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_file(&path).unwrap();
    }
}
