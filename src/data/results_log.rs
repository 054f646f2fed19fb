//! An append-only CSV file of per-sample results that survives interruption:
//! each batch of rows goes out in one write followed by `fsync`, and opening
//! an existing log drops a partly written last line, checks the header and
//! returns the complete rows, so a rerun continues where the last one stopped
//! without losing or duplicating a row.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a results log cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ResultsLogError {
    /// Reading or writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file exists with another header: results of a different run.
    #[error("{path}: header `{found}` is not this run's `{expected}` (results of another run; choose another output folder)")]
    Header {
        /// The file.
        path: String,
        /// This run's header.
        expected: String,
        /// The file's header.
        found: String,
    },
    /// A complete line with the wrong number of fields or bad quoting.
    #[error("{path}, line {line}: {reason}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// An open log. Invariant: the file holds the header and complete rows of
/// `columns` fields only, each ending in `\n`.
pub struct ResultsLog {
    path: PathBuf,
    file: File,
    columns: usize,
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Splits one CSV line (no line breaks inside fields) into fields.
fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("quoted field is never closed".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The header as its CSV line (no line break).
fn header_line(header: &[String]) -> String {
    header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",")
}

/// The rows of `text` (complete lines, the first the header), checked
/// against `header`.
fn parse_rows(path: &Path, text: &str, header: &[String]) -> Result<Vec<Vec<String>>, ResultsLogError> {
    let header_line = header_line(header);
    let mut lines = text.lines();
    let found = lines.next().unwrap_or_default();
    if found != header_line {
        return Err(ResultsLogError::Header {
            path: path.display().to_string(),
            expected: header_line,
            found: found.to_string(),
        });
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row_error = |reason: String| ResultsLogError::Row {
            path: path.display().to_string(),
            line: i + 2,
            reason,
        };
        let fields = split_line(line).map_err(row_error)?;
        if fields.len() != header.len() {
            return Err(row_error(format!(
                "{} fields, the header has {}",
                fields.len(),
                header.len()
            )));
        }
        rows.push(fields);
    }
    Ok(rows)
}

impl ResultsLog {
    /// Opens `path` for appending rows under `header`: creates it with the
    /// header when absent; otherwise truncates a partly written last line,
    /// checks the header, and returns the complete rows already there.
    ///
    /// # Errors
    /// I/O failures, another header, malformed complete rows.
    pub fn open(path: &Path, header: &[String]) -> Result<(Self, Vec<Vec<String>>), ResultsLogError> {
        let io = |source| ResultsLogError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let text = &text[..complete];
        let rows = if text.is_empty() {
            file.write_all(format!("{}\n", header_line(header)).as_bytes())
                .map_err(io)?;
            file.sync_data().map_err(io)?;
            Vec::new()
        } else {
            parse_rows(path, text, header)?
        };
        Ok((
            ResultsLog {
                path: path.to_path_buf(),
                file,
                columns: header.len(),
            },
            rows,
        ))
    }

    /// The complete rows of the log at `path` under `header`, read without
    /// changing the file (a partly written last line is left out).
    ///
    /// # Errors
    /// I/O failures (a missing file too), another header, malformed rows.
    pub fn read(path: &Path, header: &[String]) -> Result<Vec<Vec<String>>, ResultsLogError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsLogError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        parse_rows(path, &text[..complete], header)
    }

    /// Appends rows in one write and waits until they are on disk.
    ///
    /// # Errors
    /// I/O failures; a row with the wrong number of fields (nothing written).
    pub fn append(&mut self, rows: &[Vec<String>]) -> Result<(), ResultsLogError> {
        let mut text = String::new();
        for (i, row) in rows.iter().enumerate() {
            if row.len() != self.columns {
                return Err(ResultsLogError::Row {
                    path: self.path.display().to_string(),
                    line: 0,
                    reason: format!(
                        "row {i} to append has {} fields, the header has {}",
                        row.len(),
                        self.columns
                    ),
                });
            }
            text.push_str(&row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            text.push('\n');
        }
        let io = |source| ResultsLogError::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<String> {
        vec!["file".into(), "p".into()]
    }

    #[test]
    fn resumes_after_a_partial_line_without_losing_or_duplicating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (mut log, rows) = ResultsLog::open(&path, &header()).unwrap();
        assert!(rows.is_empty());
        log.append(&[vec!["a,1.png".into(), "0.25".into()], vec!["b\"q".into(), "0.5".into()]])
            .unwrap();
        drop(log);
        // an interrupted write leaves half a line
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"c.png,0.7")
            .unwrap();
        let (mut log, rows) = ResultsLog::open(&path, &header()).unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["a,1.png".to_string(), "0.25".into()],
                vec!["b\"q".into(), "0.5".into()]
            ]
        );
        log.append(&[vec!["c.png".into(), "0.75".into()]]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "file,p\n\"a,1.png\",0.25\n\"b\"\"q\",0.5\nc.png,0.75\n");
    }

    #[test]
    fn another_runs_header_or_a_broken_row_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "file,q\n").unwrap();
        assert!(matches!(
            ResultsLog::open(&path, &header()),
            Err(ResultsLogError::Header { .. })
        ));
        std::fs::write(&path, "file,p\na,1,2\n").unwrap();
        assert!(matches!(
            ResultsLog::open(&path, &header()),
            Err(ResultsLogError::Row { line: 2, .. })
        ));
        let (mut log, _) = ResultsLog::open(&dir.path().join("s.csv"), &header()).unwrap();
        assert!(log.append(&[vec!["only one".into()]]).is_err());
    }

    #[test]
    fn reading_leaves_the_file_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "file,p\na.png,0.5\nb.png,0.").unwrap();
        let rows = ResultsLog::read(&path, &header()).unwrap();
        assert_eq!(rows, vec![vec!["a.png".to_string(), "0.5".into()]]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "file,p\na.png,0.5\nb.png,0.");
        assert!(matches!(
            ResultsLog::read(&path, &["file".into(), "q".into()]),
            Err(ResultsLogError::Header { .. })
        ));
        assert!(matches!(
            ResultsLog::read(&dir.path().join("absent.csv"), &header()),
            Err(ResultsLogError::Io { .. })
        ));
    }
}
