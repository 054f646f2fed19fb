//! CSV tables read with the `csv` crate: [`TextTable`] (a header of distinct
//! column names and rows of text fields) and, from it, numeric tables
//! ([`CsvTable`], [`parse_csv_table`]). Reading is linear in the input: one
//! pass of the `csv` reader, one pass to check the quoting, and a hash set for
//! the column names.
//!
//! The syntax is RFC 4180 as the `csv` crate reads it: comma separator, `"`
//! quoting with `""` as an escaped quote, line ends LF, CRLF or CR, quoted
//! fields may span lines. A quote opens a quoted field only as the field's
//! first character (elsewhere it is an ordinary character). On top of the
//! crate, a quoted field must be closed and followed only by spaces, a comma
//! or a line end ([`CsvError::UnterminatedQuote`],
//! [`CsvError::TextAfterQuote`]), where the crate would silently take the
//! rest. Every field loses surrounding ASCII white space; lines holding
//! nothing but white space are skipped; a leading UTF-8 byte order mark is
//! ignored. Line numbers are 1-based and count LF line ends (the header is
//! line 1).

use ndarray::Array2;
use std::collections::HashSet;
use thiserror::Error;

/// Why a text cannot be read as a CSV table. Line numbers are 1-based and
/// count the LF line ends of the text (the header is line 1).
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum CsvError {
    /// No header line at all.
    #[error("empty file (expected a header line of column names)")]
    Empty,
    /// A quoted field still open at the end of the text.
    #[error("line {line}: quoted field is never closed")]
    UnterminatedQuote {
        /// Line where the field's record starts.
        line: usize,
    },
    /// Something other than a comma, a space or a line end after a closing quote.
    #[error("line {line}: unexpected `{found}` after a closing quote")]
    TextAfterQuote {
        /// Line of the character.
        line: usize,
        /// The character.
        found: char,
    },
    /// Text the `csv` reader refuses (it is not UTF-8).
    #[error("line {line}: {reason}")]
    Syntax {
        /// Line of the record.
        line: usize,
        /// The reader's message.
        reason: String,
    },
    /// A header column without a name.
    #[error("header column {column} has no name")]
    UnnamedColumn {
        /// 1-based column.
        column: usize,
    },
    /// The same name twice in the header.
    #[error("column `{name}` appears twice in the header")]
    DuplicateColumn {
        /// The repeated name.
        name: String,
    },
    /// A data row with a different number of fields than the header.
    #[error("line {line}: {found} fields, but the header has {expected}")]
    FieldCount {
        /// Line of the row.
        line: usize,
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A data field that does not parse as a number.
    #[error("line {line}, column `{column}`: `{text}` is not a number")]
    NotANumber {
        /// Line of the row.
        line: usize,
        /// Name of the column.
        column: String,
        /// The field as written.
        text: String,
    },
    /// No column of the header starts with the prefix asked for.
    #[error("no column named `{prefix}...` in the header")]
    NoColumns {
        /// The prefix.
        prefix: String,
    },
}

/// One data record of a [`TextTable`].
///
/// Invariant: `line >= 2`; `fields` are trimmed of surrounding ASCII white
/// space (their number may differ from the header's: callers check it).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The 1-based line the record starts on.
    pub line: usize,
    /// The fields, unquoted and trimmed.
    pub fields: Vec<String>,
}

/// A CSV text split into a header and records.
///
/// Invariants: `columns` holds at least one name, every name non-empty and
/// distinct; `rows` come in text order with strictly increasing lines.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    columns: Vec<String>,
    rows: Vec<Record>,
}

/// Checks the quoting rules the `csv` crate leaves open: every quoted field
/// is closed, and nothing but spaces, tabs, a comma or a line end follows
/// its closing quote. Linear in the text.
pub(crate) fn check_quotes(text: &str) -> Result<(), CsvError> {
    let bytes = text.as_bytes();
    let (mut line, mut record_line) = (1, 1);
    let mut field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if field_start && b == b'"' {
            // inside quotes until a quote that is not doubled
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(CsvError::UnterminatedQuote { line: record_line }),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(c) => {
                        line += usize::from(*c == b'\n');
                        i += 1;
                    }
                }
            }
            i += 1;
            while let Some(&c) = bytes.get(i) {
                match c {
                    b' ' | b'\t' => i += 1,
                    b',' | b'\n' | b'\r' => break,
                    _ => {
                        let found = text[i..].chars().next().unwrap_or('\u{fffd}');
                        return Err(CsvError::TextAfterQuote { line, found });
                    }
                }
            }
            field_start = false;
            continue;
        }
        match b {
            b',' => field_start = true,
            b'\n' | b'\r' => {
                line += usize::from(b == b'\n');
                record_line = line;
                field_start = true;
            }
            _ => field_start = false,
        }
        i += 1;
    }
    Ok(())
}

/// The 1-based lines of increasing byte offsets of a text, counted in one
/// pass over it in all.
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Lines<'_> {
    /// The line of the record the `csv` reader places at `byte` (which may
    /// point at the line feed of the previous record's CRLF).
    fn of(&mut self, byte: u64) -> usize {
        let mut byte = (byte as usize).min(self.text.len());
        while matches!(self.text.get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        let byte = byte.max(self.at);
        self.line += self.text[self.at..byte].iter().filter(|&&b| b == b'\n').count();
        self.at = byte;
        self.line
    }
}

impl TextTable {
    /// Reads `text`: the first non-blank line names the columns, each later
    /// non-blank line is one record (see the module doc for the syntax).
    ///
    /// # Errors
    /// [`CsvError::Empty`] without a header; the quoting errors;
    /// [`CsvError::UnnamedColumn`], [`CsvError::DuplicateColumn`].
    pub fn parse(text: &str) -> Result<Self, CsvError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        check_quotes(text)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut lines = Lines {
            text: text.as_bytes(),
            at: 0,
            line: 1,
        };
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| CsvError::Syntax {
                line: e.position().map_or(0, |p| lines.of(p.byte())),
                reason: e.to_string(),
            })?;
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            records.push(Record {
                line: record.position().map_or(0, |p| lines.of(p.byte())),
                fields: record.iter().map(str::to_string).collect(),
            });
        }
        let mut records = records.into_iter();
        let header = records.next().ok_or(CsvError::Empty)?;
        let mut seen = HashSet::with_capacity(header.fields.len());
        for (i, name) in header.fields.iter().enumerate() {
            if name.is_empty() {
                return Err(CsvError::UnnamedColumn { column: i + 1 });
            }
            if !seen.insert(name.as_str()) {
                return Err(CsvError::DuplicateColumn { name: name.clone() });
            }
        }
        Ok(Self {
            columns: header.fields,
            rows: records.collect(),
        })
    }

    /// Column names in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The records after the header.
    pub fn rows(&self) -> &[Record] {
        &self.rows
    }

    /// The columns whose name starts with `prefix` as numbers, named without
    /// the prefix (every column when `prefix` is empty).
    ///
    /// # Errors
    /// [`CsvError::NoColumns`] when no name starts with `prefix` (or a name
    /// is only the prefix); [`CsvError::FieldCount`] for a row whose field
    /// count differs from the header's; [`CsvError::NotANumber`].
    pub fn numeric(&self, prefix: &str) -> Result<CsvTable, CsvError> {
        let chosen: Vec<(usize, &str)> = self
            .columns
            .iter()
            .enumerate()
            .filter_map(|(j, name)| Some((j, name.strip_prefix(prefix)?)))
            .collect();
        if chosen.is_empty() || chosen.iter().any(|(_, name)| name.is_empty()) {
            return Err(CsvError::NoColumns { prefix: prefix.into() });
        }
        let mut flat = Vec::with_capacity(self.rows.len() * chosen.len());
        for record in &self.rows {
            if record.fields.len() != self.columns.len() {
                return Err(CsvError::FieldCount {
                    line: record.line,
                    found: record.fields.len(),
                    expected: self.columns.len(),
                });
            }
            for &(j, _) in &chosen {
                let text = &record.fields[j];
                flat.push(text.parse::<f64>().map_err(|_| CsvError::NotANumber {
                    line: record.line,
                    column: self.columns[j].clone(),
                    text: text.clone(),
                })?);
            }
        }
        let values =
            Array2::from_shape_vec((self.rows.len(), chosen.len()), flat).expect("one value per row and chosen column");
        Ok(CsvTable {
            columns: chosen.iter().map(|(_, name)| name.to_string()).collect(),
            values,
            lines: self.rows.iter().map(|r| r.line).collect(),
        })
    }
}

/// A numeric table read from CSV.
///
/// Invariants: `columns` are non-empty, pairwise distinct names (at least one);
/// `values` has one row per data line and `columns.len()` columns; `lines`
/// holds, for each row of `values`, the 1-based line of the text it came from
/// (strictly increasing, all > 1). Values are whatever `f64::from_str` reads,
/// so `NaN` and `inf` may appear; callers validate ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    columns: Vec<String>,
    values: Array2<f64>,
    lines: Vec<usize>,
}

impl CsvTable {
    /// Column names in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The data, rows x columns.
    pub fn values(&self) -> &Array2<f64> {
        &self.values
    }

    /// The 1-based line of the text that row `row` came from; `None` past the
    /// last row.
    pub fn line_of(&self, row: usize) -> Option<usize> {
        self.lines.get(row).copied()
    }
}

/// Reads a numeric CSV table: a header of column names (see [`TextTable`]),
/// then rows of numbers (`f64::from_str` syntax) with as many fields as the
/// header. A header without data rows gives a table with zero rows.
///
/// # Errors
/// Those of [`TextTable::parse`], then [`CsvError::FieldCount`] and
/// [`CsvError::NotANumber`].
pub fn parse_csv_table(text: &str) -> Result<CsvTable, CsvError> {
    TextTable::parse(text)?.numeric("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn quoted_names_crlf_blank_lines_and_spaces() {
        let t =
            parse_csv_table("\u{feff}\"Pleural Effusion\", b ,\"c, \"\"d\"\"\"\r\n1, 2 ,3\r\n\r\n4,5,6e-1").unwrap();
        assert_eq!(t.columns(), ["Pleural Effusion", "b", "c, \"d\""]);
        assert_eq!(t.values().as_slice().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 0.6]);
        assert_eq!(t.line_of(0), Some(2));
        assert_eq!(t.line_of(1), Some(4));
        assert_eq!(t.line_of(2), None);
    }

    #[test]
    fn quoted_name_spanning_lines_counts_lines() {
        let t = parse_csv_table("\"a\nb\",c\n1,2\n").unwrap();
        assert_eq!(t.columns(), ["a\nb", "c"]);
        assert_eq!(t.line_of(0), Some(3));
    }

    #[test]
    fn header_only_is_zero_rows() {
        let t = parse_csv_table("a,b\n").unwrap();
        assert_eq!(t.values().dim(), (0, 2));
    }

    #[test]
    fn columns_by_prefix_lose_the_prefix() {
        let t = TextTable::parse("file,label:a,label:b,he:a,he:b\nx.png,1,0,0.9,0.2\n").unwrap();
        let labels = t.numeric("label:").unwrap();
        assert_eq!(labels.columns(), ["a", "b"]);
        assert_eq!(labels.values().as_slice().unwrap(), [1.0, 0.0]);
        assert_eq!(t.numeric("he:").unwrap().values().as_slice().unwrap(), [0.9, 0.2]);
        assert_eq!(
            t.numeric("plain:"),
            Err(CsvError::NoColumns {
                prefix: "plain:".into()
            })
        );
        assert!(matches!(t.numeric(""), Err(CsvError::NotANumber { .. })));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_csv_table(""), Err(CsvError::Empty));
        assert_eq!(parse_csv_table("\n\n"), Err(CsvError::Empty));
        assert_eq!(
            parse_csv_table("a,\"b\n1,2\n"),
            Err(CsvError::UnterminatedQuote { line: 1 })
        );
        assert_eq!(
            parse_csv_table("a,b\n1,\"2\"\"\n"),
            Err(CsvError::UnterminatedQuote { line: 2 })
        );
        assert_eq!(
            parse_csv_table("a,\"b\"x\n"),
            Err(CsvError::TextAfterQuote { line: 1, found: 'x' })
        );
        assert_eq!(parse_csv_table("a,,b\n"), Err(CsvError::UnnamedColumn { column: 2 }));
        assert_eq!(
            parse_csv_table("a,b,a\n"),
            Err(CsvError::DuplicateColumn { name: "a".into() })
        );
        assert_eq!(
            parse_csv_table("a,b\n1,2\n3\n"),
            Err(CsvError::FieldCount {
                line: 3,
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            parse_csv_table("a,b\n1,x\n"),
            Err(CsvError::NotANumber {
                line: 2,
                column: "b".into(),
                text: "x".into()
            })
        );
    }

    /// Runs `f` on `text` and checks it took less than `limit`.
    fn bounded<T>(what: &str, text: &str, limit: Duration, f: impl Fn(&str) -> T) -> T {
        let start = Instant::now();
        let out = f(text);
        let took = start.elapsed();
        assert!(took < limit, "{what}: {took:?} (limit {limit:?})");
        out
    }

    #[test]
    fn huge_headers_and_quote_runs_are_linear() {
        let limit = Duration::from_secs(5);
        let wide: String = (0..300_000).map(|i| format!("c{i},")).collect::<String>() + "last\n";
        let t = bounded("300,000 columns", &wide, limit, parse_csv_table).unwrap();
        assert_eq!(t.columns().len(), 300_001);
        let mut repeated = "a,".repeat(300_000);
        repeated.push_str("a\n");
        let e = bounded("300,000 equal names", &repeated, limit, parse_csv_table);
        assert_eq!(e, Err(CsvError::DuplicateColumn { name: "a".into() }));
        let quotes = format!("a\n{}\n", "\"".repeat(400_000));
        let e = bounded("400,000 quotes", &quotes, limit, parse_csv_table);
        assert!(e.is_err(), "{e:?}");
        let escaped = format!("a\n\"{}\"\n", "\"\"".repeat(200_000));
        let e = bounded("200,000 escaped quotes", &escaped, limit, parse_csv_table);
        assert!(matches!(e, Err(CsvError::NotANumber { .. })), "{e:?}");
    }
}
