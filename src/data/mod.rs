//! Plaintext data around the encrypted pipeline: CSV tables with a header of
//! column names read with the `csv` crate ([`TextTable`], numeric ones with
//! [`parse_csv_table`]), the multi-label classification metrics
//! ([`metrics`]) that score a classifier's decrypted outputs against
//! ground-truth labels, X-ray image files in and
//! out with the VQGAN's preprocessing ([`image`]), a synthetic chest X-ray set
//! in NIH ChestX-ray14's layout ([`synth`]), and the resumable per-sample
//! results file of long runs ([`results_log`]).

pub mod dataset;
pub mod image;
pub mod metrics;
pub mod results_log;
pub mod synth;
mod table;

pub use table::{parse_csv_table, CsvError, CsvTable, Record, TextTable};
