//! The labelled test sets that scoring runs over: NIH ChestX-ray14 ([`nih`]),
//! CheXpert ([`chexpert`]) and precomputed latents ([`latents`]), each read
//! into a [`Dataset`] of named [`Sample`]s with 0/1 labels over its classes.
//!
//! Every loader validates at the door: unknown labels, values other than 0
//! and 1 (after CheXpert's [`UncertainPolicy`]), duplicate or unknown names,
//! missing files and row-count mismatches are [`DatasetError`]s naming the
//! file and, where one applies, the 1-based line. CSV files are read as a
//! [`TextTable`], like [`parse_csv_table`] (quoted fields with embedded
//! commas, quotes and line ends; LF, CRLF or CR line ends; a byte order mark).

use super::{parse_csv_table, CsvError, Record, TextTable};
use crate::nn::spec::NIH15;
use ndarray::{Array2, Array4, Axis, Slice};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a data set cannot be loaded or queried. Every variant names the file
/// it is about and, where one applies, the 1-based line in it (for CSV files
/// the line a record starts on, the header being line 1).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// None of the places a required file may be at holds it.
    #[error("{what} not found (looked for {})", list_paths(.tried))]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A file or folder that exists but cannot be read (or is not UTF-8 text).
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Malformed CSV: quoting, an empty or repeated header name, a row with the
    /// wrong number of fields, a non-number in a numeric table. The line is in
    /// the source.
    #[error("{path}: {source}", path = .path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: CsvError,
    },
    /// A CSV header without a column the format requires.
    #[error("{path}: no `{column}` column in the header", path = .path.display())]
    MissingColumn {
        /// The CSV file.
        path: PathBuf,
        /// The required column.
        column: &'static str,
    },
    /// An NIH finding that is none of the 15 classes.
    #[error("{path}: line {line}: unknown label `{label}`", path = .path.display())]
    UnknownLabel {
        /// The CSV file.
        path: PathBuf,
        /// Line of the row.
        line: usize,
        /// The label as written.
        label: String,
    },
    /// A label value that is not 0 or 1 (CheXpert: after mapping -1 and blank).
    #[error("{path}: line {line}, column `{column}`: label `{text}` is not 0 or 1", path = .path.display())]
    BadLabel {
        /// The CSV file.
        path: PathBuf,
        /// Line of the row.
        line: usize,
        /// The class column.
        column: String,
        /// The value as written.
        text: String,
    },
    /// A sample without a name (empty image name, path or line of names).
    #[error("{path}: line {line}: empty sample name", path = .path.display())]
    EmptyName {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
    },
    /// A sample name seen twice in one file.
    #[error("{path}: line {line}: `{name}` appears a second time", path = .path.display())]
    DuplicateName {
        /// The file.
        path: PathBuf,
        /// Line of the second occurrence.
        line: usize,
        /// The name.
        name: String,
    },
    /// A split file names an image the label table has no row for.
    #[error("{path}: line {line}: `{name}` is not in {csv}", path = .path.display(), csv = .csv.display())]
    NotInCsv {
        /// The split file.
        path: PathBuf,
        /// Line of the name.
        line: usize,
        /// The image name.
        name: String,
        /// The label table.
        csv: PathBuf,
    },
    /// The image of a row is in none of the places looked at.
    #[error("{path}: line {line}: image `{image}` not found (looked in {})", list_paths(.looked_in), path = .path.display())]
    MissingImage {
        /// The CSV file.
        path: PathBuf,
        /// Line of the row.
        line: usize,
        /// The image name or path as the row writes it.
        image: String,
        /// The folders searched (NIH) or the candidate paths tried (CheXpert).
        looked_in: Vec<PathBuf>,
    },
    /// A file with a different number of rows than the file it goes with.
    #[error("{path}: {found} rows, but {reference} has {expected}", path = .path.display(), reference = .reference.display())]
    RowCount {
        /// The file.
        path: PathBuf,
        /// Its rows.
        found: usize,
        /// The rows of `reference`.
        expected: usize,
        /// The file it must agree with.
        reference: PathBuf,
    },
    /// A latents file that is not a finite float32/float64 `B x C x H x W` array.
    #[error("{path}: {reason}", path = .path.display())]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data set with no sample.
    #[error("{path}: no samples", path = .path.display())]
    NoSamples {
        /// The file that should have listed them.
        path: PathBuf,
    },
    /// A label table without any class column.
    #[error("{path}: no class columns", path = .path.display())]
    NoClasses {
        /// The label table.
        path: PathBuf,
    },
    /// Classes a model asks for that the data set does not label.
    #[error("{path}: no labels for {}", .missing.join(", "), path = .path.display())]
    MissingClasses {
        /// The data set's label file.
        path: PathBuf,
        /// Every class asked for and absent, in the order asked.
        missing: Vec<String>,
    },
}

/// The paths, comma-separated, for error messages.
fn list_paths(paths: &[PathBuf]) -> String {
    let mut s = String::new();
    for (i, p) in paths.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{}", p.display());
    }
    s
}

/// How CheXpert's uncertain labels (-1.0) are mapped (Irvin et al. 2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UncertainPolicy {
    /// U-zeros: uncertain is negative (the paper's choice).
    #[default]
    Zeros,
    /// U-ones: uncertain is positive.
    Ones,
}

/// Which loader built a [`Dataset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// NIH ChestX-ray14 images ([`nih`]).
    Nih,
    /// CheXpert images ([`chexpert`]).
    Chexpert,
    /// Precomputed latents ([`latents`]).
    Latents,
}

/// One image (or latent) with its labels.
///
/// Invariants (as built by the loaders): `name` is non-empty and unique in its
/// data set; `labels` has one value per class of the data set, each exactly
/// 0.0 or 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unique id, as it will appear in `results.csv`: the NIH image index, the
    /// CheXpert `Path` as written, or the latent's name.
    pub name: String,
    /// The image file; for latents the latents file.
    pub path: PathBuf,
    /// 0/1 labels over [`Dataset::classes`].
    pub labels: Vec<f64>,
}

/// A labelled test set.
///
/// Invariants (as built by the loaders; code that edits the public fields must
/// keep them): `classes` are non-empty, pairwise distinct names; `samples` is
/// non-empty (until [`Dataset::truncate`]), with unique names and
/// `classes.len()` labels each; `latents` is `Some` exactly for
/// [`DatasetKind::Latents`], with row `i` the latent of `samples[i]`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The loader that built it.
    pub kind: DatasetKind,
    /// Class names, in the order of every sample's `labels`.
    pub classes: Vec<String>,
    /// The samples, in the split file's (NIH) or label file's order.
    pub samples: Vec<Sample>,
    /// The file the labels came from (the label CSV, or `labels.csv`).
    pub label_file: PathBuf,
    /// `B x C x H x W` latents, `B = samples.len()`; only for latents.
    pub latents: Option<Array4<f32>>,
}

impl Dataset {
    /// The label matrix (samples x `classes`), columns in the order of
    /// `classes` (a model's class names) and matched to this data set's
    /// classes by exact name. Extra classes of the data set are left out.
    ///
    /// # Errors
    /// [`DatasetError::MissingClasses`] listing every class of `classes` that
    /// the data set does not have.
    ///
    /// # Panics
    /// If a sample has fewer labels than `self.classes` (a broken invariant).
    pub fn labels_for(&self, classes: &[String]) -> Result<Array2<f64>, DatasetError> {
        let position = |c: &String| self.classes.iter().position(|own| own == c);
        let missing: Vec<String> = classes.iter().filter(|c| position(c).is_none()).cloned().collect();
        if !missing.is_empty() {
            return Err(DatasetError::MissingClasses {
                path: self.label_file.clone(),
                missing,
            });
        }
        let columns: Vec<usize> = classes.iter().filter_map(position).collect();
        Ok(Array2::from_shape_fn((self.samples.len(), columns.len()), |(i, j)| {
            self.samples[i].labels[columns[j]]
        }))
    }

    /// Drops the first `n` samples (all of them if there are fewer), and the
    /// matching rows of `latents`.
    pub fn skip(&mut self, n: usize) {
        let n = n.min(self.samples.len());
        self.samples.drain(..n);
        if let Some(latents) = &mut self.latents {
            latents.slice_axis_inplace(Axis(0), Slice::from(n..));
        }
    }

    /// Keeps the first `n` samples (all of them if there are fewer), and the
    /// matching rows of `latents`.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.samples.len());
        self.samples.truncate(n);
        if let Some(latents) = &mut self.latents {
            latents.slice_axis_inplace(Axis(0), Slice::from(..n));
        }
    }
}

/// The text of `path`; a missing file is [`DatasetError::NotFound`] for `what`.
fn read_text(path: &Path, what: &'static str) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DatasetError::NotFound {
            what,
            tried: vec![path.to_path_buf()],
        },
        _ => DatasetError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The first of `candidates` that is a file.
fn first_file(candidates: Vec<PathBuf>, what: &'static str) -> Result<PathBuf, DatasetError> {
    match candidates.iter().position(|p| p.is_file()) {
        Some(i) => Ok(candidates[i].clone()),
        None => Err(DatasetError::NotFound {
            what,
            tried: candidates,
        }),
    }
}

/// A CSV file read as a [`TextTable`], with its path for errors.
struct CsvFile {
    path: PathBuf,
    table: TextTable,
}

impl CsvFile {
    /// Reads and splits `path`. The header must have non-empty, distinct names.
    fn read(path: &Path, what: &'static str) -> Result<Self, DatasetError> {
        let text = read_text(path, what)?;
        let table = TextTable::parse(&text).map_err(|source| DatasetError::Csv {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            table,
        })
    }

    /// Column names in file order.
    fn columns(&self) -> &[String] {
        self.table.columns()
    }

    /// The records after the header.
    fn rows(&self) -> &[Record] {
        self.table.rows()
    }

    /// Index of the column `name`.
    fn column(&self, name: &'static str) -> Result<usize, DatasetError> {
        self.columns()
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DatasetError::MissingColumn {
                path: self.path.clone(),
                column: name,
            })
    }

    /// Checks that `row` has `expected` fields, or at least that many if
    /// `at_least` (a quoted NIH header has fewer fields than its rows).
    fn check_width(&self, row: &Record, at_least: bool) -> Result<(), DatasetError> {
        let (found, expected) = (row.fields.len(), self.columns().len());
        if found == expected || (at_least && found > expected) {
            return Ok(());
        }
        Err(DatasetError::Csv {
            path: self.path.clone(),
            source: CsvError::FieldCount {
                line: row.line,
                found,
                expected,
            },
        })
    }

    /// The sample name in column `col` of `row`: non-empty and not in `seen`
    /// (which it is added to, with its row index).
    fn name<'a>(
        &self,
        row: &'a Record,
        col: usize,
        seen: &mut HashMap<&'a str, usize>,
        index: usize,
    ) -> Result<&'a str, DatasetError> {
        let name = row.fields[col].as_str();
        claim_name(&self.path, row.line, name, seen, index)?;
        Ok(name)
    }
}

/// Records `name` (at `line` of `path`) in `seen` with `index` (the caller's
/// row index, which NIH uses to find rows by name).
///
/// # Errors
/// [`DatasetError::EmptyName`] or [`DatasetError::DuplicateName`].
fn claim_name<'a>(
    path: &Path,
    line: usize,
    name: &'a str,
    seen: &mut HashMap<&'a str, usize>,
    index: usize,
) -> Result<(), DatasetError> {
    if name.is_empty() {
        return Err(DatasetError::EmptyName {
            path: path.to_path_buf(),
            line,
        });
    }
    match seen.entry(name) {
        Entry::Occupied(_) => Err(DatasetError::DuplicateName {
            path: path.to_path_buf(),
            line,
            name: name.to_string(),
        }),
        Entry::Vacant(v) => {
            v.insert(index);
            Ok(())
        }
    }
}

/// One row of NIH's label table.
struct NihRow<'a> {
    line: usize,
    name: &'a str,
    labels: Vec<f64>,
}

/// Loads NIH ChestX-ray14.
///
/// The label table is `csv` if given, else `root/Data_Entry_2017.csv`, else
/// `root/Data_Entry_2017_v2020.csv`. Its `Image Index` and `Finding Labels`
/// columns are found by name; rows may have more fields than the header,
/// never fewer (NIH's last two names hold a comma inside brackets: unquoted,
/// as NIH ships it, they split into 11 fields like the rows; quoted, they are
/// 9 fields for rows of 11). Classes are [`NIH15`] in that order;
/// `Finding Labels` are joined by `|` (`No Finding` for none).
///
/// The samples are the names of the split file, in its order (one name a line,
/// blank lines skipped): `split` if given, else `root/test_list.txt` if it
/// exists, else every row of the table in table order. Images are looked up by
/// name in `root/images/`, then the `root/images_*/images/` and
/// `root/images_*/` folders in name order, then `root` itself; each folder is
/// listed once (no per-image file system call). Only the selected samples need
/// an image.
///
/// # Errors
/// [`DatasetError::NotFound`] (table or explicit split file), `Io`, `Csv`,
/// `MissingColumn`, `UnknownLabel` (naming line and label), `EmptyName`,
/// `DuplicateName` (in the table or the split), `NotInCsv` (a split name
/// without a row), `MissingImage` (naming the row's line and image),
/// `NoSamples`.
pub fn nih(root: &Path, csv: Option<&Path>, split: Option<&Path>) -> Result<Dataset, DatasetError> {
    let csv_path = match csv {
        Some(p) => p.to_path_buf(),
        None => first_file(
            vec![root.join("Data_Entry_2017.csv"), root.join("Data_Entry_2017_v2020.csv")],
            "NIH label table",
        )?,
    };
    let table = CsvFile::read(&csv_path, "NIH label table")?;
    let name_col = table.column("Image Index")?;
    let labels_col = table.column("Finding Labels")?;
    let mut by_name = HashMap::with_capacity(table.rows().len());
    let mut rows = Vec::with_capacity(table.rows().len());
    for (i, row) in table.rows().iter().enumerate() {
        table.check_width(row, true)?;
        let name = table.name(row, name_col, &mut by_name, i)?;
        let labels = nih_labels(&csv_path, row.line, &row.fields[labels_col])?;
        rows.push(NihRow {
            line: row.line,
            name,
            labels,
        });
    }

    let split_path = match split {
        Some(p) => Some(p.to_path_buf()),
        None => Some(root.join("test_list.txt")).filter(|p| p.is_file()),
    };
    let selected: Vec<usize> = match &split_path {
        Some(path) => split_rows(path, &by_name, &csv_path)?,
        None => (0..rows.len()).collect(),
    };
    if selected.is_empty() {
        return Err(DatasetError::NoSamples {
            path: split_path.unwrap_or(csv_path),
        });
    }

    let (images, folders) = image_index(root)?;
    let samples = selected
        .into_iter()
        .map(|i| {
            let row = &rows[i];
            let path = images.get(row.name).ok_or_else(|| DatasetError::MissingImage {
                path: csv_path.clone(),
                line: row.line,
                image: row.name.to_string(),
                looked_in: folders.clone(),
            })?;
            Ok(Sample {
                name: row.name.to_string(),
                path: path.clone(),
                labels: row.labels.clone(),
            })
        })
        .collect::<Result<_, DatasetError>>()?;
    Ok(Dataset {
        kind: DatasetKind::Nih,
        classes: NIH15.iter().map(|c| c.to_string()).collect(),
        samples,
        label_file: csv_path,
        latents: None,
    })
}

/// The 0/1 vector over [`NIH15`] of a `Finding Labels` field.
fn nih_labels(path: &Path, line: usize, field: &str) -> Result<Vec<f64>, DatasetError> {
    let mut labels = vec![0.0; NIH15.len()];
    for label in field.split('|').map(str::trim) {
        let j = NIH15
            .iter()
            .position(|c| *c == label)
            .ok_or_else(|| DatasetError::UnknownLabel {
                path: path.to_path_buf(),
                line,
                label: label.to_string(),
            })?;
        labels[j] = 1.0;
    }
    Ok(labels)
}

/// The table rows named by the split file at `path`, in its order.
fn split_rows(path: &Path, by_name: &HashMap<&str, usize>, csv: &Path) -> Result<Vec<usize>, DatasetError> {
    let text = read_text(path, "split file")?;
    let mut seen = HashMap::new();
    let mut selected = Vec::new();
    for (i, name) in text.lines().enumerate() {
        let (line, name) = (i + 1, name.trim());
        if name.is_empty() {
            continue;
        }
        claim_name(path, line, name, &mut seen, selected.len())?;
        let row = by_name.get(name).ok_or_else(|| DatasetError::NotInCsv {
            path: path.to_path_buf(),
            line,
            name: name.to_string(),
            csv: csv.to_path_buf(),
        })?;
        selected.push(*row);
    }
    Ok(selected)
}

/// File name -> path for the files of NIH's image folders (see [`nih`] for the
/// order; the first folder holding a name wins), and the folders searched.
fn image_index(root: &Path) -> Result<(HashMap<String, PathBuf>, Vec<PathBuf>), DatasetError> {
    let top = read_folder(root)?;
    let mut parts: Vec<&str> = top
        .iter()
        .filter(|(name, is_file)| !is_file && name != "images" && name.starts_with("images"))
        .map(|(name, _)| name.as_str())
        .collect();
    parts.sort_unstable();
    let mut folders = vec![root.join("images")];
    for part in parts {
        folders.push(root.join(part).join("images"));
        folders.push(root.join(part));
    }
    folders.retain(|f| f.is_dir());

    let mut images = HashMap::new();
    for folder in &folders {
        add_files(&mut images, folder, read_folder(folder)?);
    }
    add_files(&mut images, root, top);
    folders.push(root.to_path_buf());
    Ok((images, folders))
}

/// Adds the files among `entries` (of `folder`, as [`read_folder`] lists them)
/// to `images`, keeping names already there.
fn add_files(images: &mut HashMap<String, PathBuf>, folder: &Path, entries: Vec<(String, bool)>) {
    for (name, is_file) in entries {
        if is_file {
            let path = folder.join(&name);
            images.entry(name).or_insert(path);
        }
    }
}

/// The UTF-8 names in `dir`, each with whether it is a file (following
/// symbolic links; other entries are folders or skipped kinds). File types come
/// from the directory listing, so no entry costs a call of its own unless it
/// is a link.
fn read_folder(dir: &Path) -> Result<Vec<(String, bool)>, DatasetError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Io { path, source }
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let mut kind = entry.file_type().map_err(io_err(&entry.path()))?;
        if kind.is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(meta) => kind = meta.file_type(),
                Err(_) => continue, // a dangling link is no file
            }
        }
        if kind.is_file() || kind.is_dir() {
            found.push((name, kind.is_file()));
        }
    }
    Ok(found)
}

/// CheXpert's columns that are not labels.
const CHEXPERT_META: [&str; 5] = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"];

/// Loads CheXpert.
///
/// The label table is `csv` if given, else `root/valid.csv`. Classes are its
/// columns other than `Path`, `Sex`, `Age`, `Frontal/Lateral` and `AP/PA`, in
/// file order. A label is `1`, `0`, `-1` (uncertain, mapped by `policy`) or
/// blank (not mentioned: 0), written in any `f64` syntax (`1.0`). Each row's
/// `Path` (also the sample's name, as written) is resolved against `root`,
/// then `root`'s parent, then with its first component stripped against
/// `root`; the first existing file wins. Samples come in table order.
///
/// # Errors
/// [`DatasetError::NotFound`] (table), `Io`, `Csv` (also a row whose field
/// count differs from the header's), `MissingColumn` (`Path`), `NoClasses`,
/// `BadLabel` (naming line and column), `EmptyName`, `DuplicateName`,
/// `MissingImage` (naming the line and the paths tried), `NoSamples`.
pub fn chexpert(root: &Path, csv: Option<&Path>, policy: UncertainPolicy) -> Result<Dataset, DatasetError> {
    let csv_path = csv.map_or_else(|| root.join("valid.csv"), Path::to_path_buf);
    let table = CsvFile::read(&csv_path, "CheXpert label table")?;
    let path_col = table.column("Path")?;
    let label_cols: Vec<usize> = (0..table.columns().len())
        .filter(|&j| !CHEXPERT_META.contains(&table.columns()[j].as_str()))
        .collect();
    if label_cols.is_empty() {
        return Err(DatasetError::NoClasses { path: csv_path });
    }
    let uncertain = match policy {
        UncertainPolicy::Zeros => 0.0,
        UncertainPolicy::Ones => 1.0,
    };
    let mut seen = HashMap::with_capacity(table.rows().len());
    let mut samples = Vec::with_capacity(table.rows().len());
    for (i, row) in table.rows().iter().enumerate() {
        table.check_width(row, false)?;
        let name = table.name(row, path_col, &mut seen, i)?;
        let labels = label_cols
            .iter()
            .map(|&j| {
                let text = row.fields[j].as_str();
                match text.parse::<f64>() {
                    _ if text.is_empty() => Ok(0.0),
                    Ok(-1.0) => Ok(uncertain),
                    Ok(0.0) => Ok(0.0),
                    Ok(1.0) => Ok(1.0),
                    _ => Err(DatasetError::BadLabel {
                        path: csv_path.clone(),
                        line: row.line,
                        column: table.columns()[j].clone(),
                        text: text.to_string(),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        let path = resolve_chexpert(root, name).map_err(|looked_in| DatasetError::MissingImage {
            path: csv_path.clone(),
            line: row.line,
            image: name.to_string(),
            looked_in,
        })?;
        samples.push(Sample {
            name: name.to_string(),
            path,
            labels,
        });
    }
    if samples.is_empty() {
        return Err(DatasetError::NoSamples { path: csv_path });
    }
    Ok(Dataset {
        kind: DatasetKind::Chexpert,
        classes: label_cols.iter().map(|&j| table.columns()[j].clone()).collect(),
        samples,
        label_file: csv_path,
        latents: None,
    })
}

/// The first existing file among CheXpert's resolutions of `written` (see
/// [`chexpert`]), or every candidate tried.
fn resolve_chexpert(root: &Path, written: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let written = Path::new(written);
    let mut candidates = vec![root.join(written)];
    if let Some(parent) = root.parent() {
        candidates.push(parent.join(written));
    }
    let mut rest = written.components();
    if rest.next().is_some() && rest.clone().next().is_some() {
        candidates.push(root.join(rest.as_path()));
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(candidates),
    }
}

/// Loads precomputed latents.
///
/// `root/latents.npy` is a finite float32 or float64 `B x C x H x W` array
/// (float64 is narrowed to float32); `root/labels.csv` a header of class names
/// then B rows of 0/1 (read by [`parse_csv_table`]); `root/names.txt`, if
/// present, B lines of unique non-empty names (else `latent_00000`, ...).
/// Sample `i` is row `i` of both; every sample's path is the latents file.
///
/// # Errors
/// [`DatasetError::NotFound`] (latents or labels), `Io`, `Npy` (other dtype or
/// rank, non-finite values), `Csv`, `BadLabel` (naming the line), `RowCount`
/// (labels or names against latents), `EmptyName`, `DuplicateName`,
/// `NoSamples` (B = 0).
pub fn latents(root: &Path) -> Result<Dataset, DatasetError> {
    let npy_path = root.join("latents.npy");
    let array = read_latents(&npy_path)?;
    let b = array.len_of(Axis(0));
    if b == 0 {
        return Err(DatasetError::NoSamples { path: npy_path });
    }
    let row_count = |path: &Path, found: usize| {
        if found == b {
            Ok(())
        } else {
            Err(DatasetError::RowCount {
                path: path.to_path_buf(),
                found,
                expected: b,
                reference: npy_path.clone(),
            })
        }
    };

    let labels_path = root.join("labels.csv");
    let table = parse_csv_table(&read_text(&labels_path, "latent labels")?).map_err(|source| DatasetError::Csv {
        path: labels_path.clone(),
        source,
    })?;
    let values = table.values();
    row_count(&labels_path, values.nrows())?;
    for ((i, j), &v) in values.indexed_iter() {
        if v != 0.0 && v != 1.0 {
            return Err(DatasetError::BadLabel {
                path: labels_path.clone(),
                line: table.line_of(i).unwrap_or(0),
                column: table.columns()[j].clone(),
                text: v.to_string(),
            });
        }
    }

    let names_path = root.join("names.txt");
    let names: Vec<String> = if names_path.is_file() {
        let text = read_text(&names_path, "latent names")?;
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        row_count(&names_path, lines.len())?;
        let mut seen = HashMap::with_capacity(b);
        for (i, name) in lines.iter().enumerate() {
            claim_name(&names_path, i + 1, name, &mut seen, i)?;
        }
        lines.into_iter().map(String::from).collect()
    } else {
        (0..b).map(|i| format!("latent_{i:05}")).collect()
    };

    let samples = names
        .into_iter()
        .zip(values.rows())
        .map(|(name, labels)| Sample {
            name,
            path: npy_path.clone(),
            labels: labels.to_vec(),
        })
        .collect();
    Ok(Dataset {
        kind: DatasetKind::Latents,
        classes: table.columns().to_vec(),
        samples,
        label_file: labels_path,
        latents: Some(array),
    })
}

/// Reads a finite float32 or float64 `B x C x H x W` `.npy` array as float32
/// (its declared size checked before anything is allocated: [`crate::npy`]).
fn read_latents(path: &Path) -> Result<Array4<f32>, DatasetError> {
    let bad = |reason: String| DatasetError::Npy {
        path: path.to_path_buf(),
        reason: format!("not a float32/float64 B x C x H x W array ({reason})"),
    };
    let array = match crate::npy::read_npy(path) {
        Err(crate::npy::NpyError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatasetError::NotFound {
                what: "latents",
                tried: vec![path.to_path_buf()],
            })
        }
        Err(crate::npy::NpyError::Io(source)) => {
            return Err(DatasetError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
        r => r.map_err(|e| bad(e.to_string()))?.into_f32(),
    };
    let array = array
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| bad("not four-dimensional".into()))?;
    if let Some(i) = array.iter().position(|v| !v.is_finite()) {
        return Err(DatasetError::Npy {
            path: path.to_path_buf(),
            reason: format!("element {i} is not finite in float32"),
        });
    }
    Ok(array)
}
