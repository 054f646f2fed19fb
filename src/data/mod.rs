//! Plaintext data around the encrypted pipeline: a reader for numeric CSV
//! tables with a header of column names ([`parse_csv_table`]), the
//! multi-label classification metrics ([`metrics`]) that score a classifier's
//! decrypted outputs against ground-truth labels, X-ray image files in and
//! out with the VQGAN's preprocessing ([`image`]), a synthetic chest X-ray set
//! in NIH ChestX-ray14's layout ([`synth`]), and the resumable per-sample
//! results file of long runs ([`results_log`]).

pub mod dataset;
pub mod image;
pub mod metrics;
pub mod results_log;
pub mod synth;

use ndarray::Array2;
use thiserror::Error;

/// Why a text cannot be read as a numeric CSV table. Line numbers are 1-based
/// and count physical lines of the text (the header is line 1).
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum CsvError {
    /// No header line at all.
    #[error("empty file (expected a header line of column names)")]
    Empty,
    /// A quoted field still open at the end of the text.
    #[error("line {line}: quoted field is never closed")]
    UnterminatedQuote {
        /// Line where the record holding the field starts.
        line: usize,
    },
    /// Something other than a comma or a line end after a closing quote.
    #[error("line {line}: unexpected `{found}` after a closing quote")]
    TextAfterQuote {
        /// Line of the character.
        line: usize,
        /// The character.
        found: char,
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

/// One CSV record: the line it starts on and its fields (`quoted` marks a
/// field written between double quotes, whose content is kept verbatim).
struct Record {
    line: usize,
    fields: Vec<Field>,
}

struct Field {
    text: String,
    quoted: bool,
}

impl Field {
    /// Unquoted fields lose surrounding spaces and tabs; quoted ones keep them.
    fn value(&self) -> &str {
        if self.quoted {
            &self.text
        } else {
            self.text.trim_matches([' ', '\t'])
        }
    }
}

/// Splits `text` into records (RFC 4180: comma separator, `"` quoting with
/// `""` as an escaped quote, line ends LF, CRLF or CR; quoted fields may span
/// lines). Blank lines are dropped; a leading UTF-8 byte order mark is ignored.
/// Spaces before an opening or after a closing quote are allowed.
fn split_records(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field opened with a quote
    let mut in_quotes = false; // inside the quotes right now
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.chars().peekable();

    let end_record = |fields: &mut Vec<Field>, records: &mut Vec<Record>, record_line: usize| {
        let blank = fields.len() == 1 && !fields[0].quoted && fields[0].value().is_empty();
        let taken = std::mem::take(fields);
        if !blank {
            records.push(Record {
                line: record_line,
                fields: taken,
            });
        }
    };

    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => {
                    if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(Field {
                    text: std::mem::take(&mut field),
                    quoted,
                });
                quoted = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                fields.push(Field {
                    text: std::mem::take(&mut field),
                    quoted,
                });
                quoted = false;
                end_record(&mut fields, &mut records, record_line);
                line += 1;
                record_line = line;
            }
            '"' if !quoted && field.trim_matches([' ', '\t']).is_empty() => {
                field.clear();
                quoted = true;
                in_quotes = true;
            }
            _ if quoted => {
                if c != ' ' && c != '\t' {
                    return Err(CsvError::TextAfterQuote { line, found: c });
                }
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(CsvError::UnterminatedQuote { line: record_line });
    }
    if !field.is_empty() || quoted || !fields.is_empty() {
        fields.push(Field { text: field, quoted });
        end_record(&mut fields, &mut records, record_line);
    }
    Ok(records)
}

/// Reads a numeric CSV table: the first non-blank line names the columns, each
/// later non-blank line is one row of numbers (`f64::from_str` syntax, spaces
/// around a field allowed). Names may be quoted (`"Pleural Effusion"`,
/// `"a, ""b"""`); unquoted names are trimmed of spaces.
///
/// Errors: no header, malformed quoting, an unnamed or repeated column, a row
/// whose field count differs from the header's, a field that is not a number.
/// A header without data rows gives a table with zero rows.
pub fn parse_csv_table(text: &str) -> Result<CsvTable, CsvError> {
    let records = split_records(text)?;
    let mut records = records.into_iter();
    let header = records.next().ok_or(CsvError::Empty)?;
    let mut columns = Vec::with_capacity(header.fields.len());
    for (i, f) in header.fields.iter().enumerate() {
        let name = f.value();
        if name.is_empty() {
            return Err(CsvError::UnnamedColumn { column: i + 1 });
        }
        if columns.iter().any(|c: &String| c == name) {
            return Err(CsvError::DuplicateColumn { name: name.to_string() });
        }
        columns.push(name.to_string());
    }
    let width = columns.len();
    let mut flat = Vec::new();
    let mut lines = Vec::new();
    for record in records {
        if record.fields.len() != width {
            return Err(CsvError::FieldCount {
                line: record.line,
                found: record.fields.len(),
                expected: width,
            });
        }
        for (f, name) in record.fields.iter().zip(&columns) {
            let text = f.value();
            let v: f64 = text.parse().map_err(|_| CsvError::NotANumber {
                line: record.line,
                column: name.clone(),
                text: text.to_string(),
            })?;
            flat.push(v);
        }
        lines.push(record.line);
    }
    let values = Array2::from_shape_vec((lines.len(), width), flat).map_err(|_| CsvError::Empty)?;
    Ok(CsvTable { columns, values, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refusals() {
        assert_eq!(parse_csv_table(""), Err(CsvError::Empty));
        assert_eq!(parse_csv_table("\n\n"), Err(CsvError::Empty));
        assert_eq!(
            parse_csv_table("a,\"b\n1,2\n"),
            Err(CsvError::UnterminatedQuote { line: 1 })
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
}
