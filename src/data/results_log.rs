//! An append-only CSV file of per-sample results (written and read with the
//! `csv` crate) that survives interruption:
//! each batch of rows goes out in one write followed by `fsync`, and opening
//! an existing log drops a partly written last line, checks the header and
//! returns the complete rows, so a rerun continues where the last one stopped
//! without losing or duplicating a row.

use super::table::check_quotes;
use super::CsvError;
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

/// The rows as CSV text, one `\n`-terminated line each, written by the
/// `csv` crate (a field is quoted when it holds a comma, a quote or a line
/// feed).
fn csv_lines(rows: &[&[String]]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for row in rows {
        writer.write_record(*row).expect("writing to memory");
    }
    let bytes = writer.into_inner().expect("writing to memory");
    String::from_utf8(bytes).expect("UTF-8 fields give UTF-8 text")
}

/// The header as its CSV line (no line break).
fn header_line(header: &[String]) -> String {
    csv_lines(&[header]).trim_end_matches('\n').to_string()
}

/// The rows of `text` (complete lines, the first the header), checked
/// against `header`. Fields are read verbatim (no trimming); only a line
/// feed ends a record, as [`csv_lines`] writes them.
fn parse_rows(path: &Path, text: &str, header: &[String]) -> Result<Vec<Vec<String>>, ResultsLogError> {
    let row_error = |line: usize, reason: String| ResultsLogError::Row {
        path: path.display().to_string(),
        line,
        reason,
    };
    let header_error = || ResultsLogError::Header {
        path: path.display().to_string(),
        expected: header_line(header),
        found: text.lines().next().unwrap_or_default().to_string(),
    };
    check_quotes(text).map_err(|e| match e {
        CsvError::UnterminatedQuote { line } | CsvError::TextAfterQuote { line, .. } => row_error(line, e.to_string()),
        other => row_error(0, other.to_string()),
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let line_of = |position: Option<&csv::Position>| position.map_or(0, |p| p.line() as usize);
    let mut next = || {
        records
            .next()
            .map(|record| record.map_err(|e| row_error(line_of(e.position()), e.to_string())))
    };
    match next().transpose()? {
        Some(found) if found.iter().eq(header.iter().map(String::as_str)) => {}
        _ => return Err(header_error()),
    }
    let mut rows = Vec::new();
    while let Some(record) = next().transpose()? {
        if record.len() != header.len() {
            return Err(row_error(
                line_of(record.position()),
                format!("{} fields, the header has {}", record.len(), header.len()),
            ));
        }
        rows.push(record.iter().map(str::to_string).collect());
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
            file.write_all(csv_lines(&[header]).as_bytes()).map_err(io)?;
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
        }
        let text = csv_lines(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>());
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

    #[test]
    fn fields_with_line_breaks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let rows = vec![
            vec!["a\nb.png".to_string(), "0.5".into()],
            vec!["c\rd.png".into(), "0.25".into()],
            vec![" e.png ".into(), "".into()],
        ];
        let (mut log, _) = ResultsLog::open(&path, &header()).unwrap();
        log.append(&rows).unwrap();
        assert_eq!(ResultsLog::read(&path, &header()).unwrap(), rows);
        let (_, reopened) = ResultsLog::open(&path, &header()).unwrap();
        assert_eq!(reopened, rows);
    }
}
