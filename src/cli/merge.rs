//! `merge`: the folders that parts of one run were scored into, folded
//! into one ([`crate::pipeline::score::merge`]); no data set, model, VQGAN
//! or key is read.

use super::progress::Stderr;
use super::score::print_summary;
use super::CliError;
use crate::pipeline::score;
use clap::Args;
use std::path::PathBuf;

/// Missing images named in the error line (summary.json has them all).
const MISSING_NAMED: usize = 10;

/// Arguments of `merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The merged folder (run.json, split.txt, results.csv, failed.csv,
    /// summary.json, summary.md, roc.png); its rows are replaced.
    #[arg(long)]
    out: PathBuf,
    /// The parts' folders (`score --shard`, `--offset`/`--limit`), all of
    /// the same run; where two have an image, the first named is kept.
    #[arg(required = true, value_name = "PART")]
    parts: Vec<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `merge`: prints the summary, then fails (exit status 1) when
/// images of the split are in no part.
pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    let observer = Stderr::scoring(args.json);
    let report = score::merge(&args.parts, &args.out, &observer);
    observer.finish();
    let report = report?;
    print_summary(&report.summary, &args.out, args.json);
    if !report.duplicates.is_empty() && !args.json {
        eprintln!(
            "note: {} image(s) are in more than one part; the first part's row is kept",
            report.duplicates.len()
        );
    }
    if report.missing.is_empty() {
        return Ok(());
    }
    let named: Vec<&str> = report.missing.iter().take(MISSING_NAMED).map(String::as_str).collect();
    Err(CliError::CheckFailed(format!(
        "{} image(s) of the split are in no part: {}{}",
        report.missing.len(),
        named.join(", "),
        if report.missing.len() > MISSING_NAMED {
            ", ... (summary.json lists them all)"
        } else {
            ""
        }
    )))
}
