//! The figures the CLI writes as PNG files: per-class ROC curves of the
//! plaintext and the encrypted classifier side by side ([`roc_png`], with the
//! curves from [`roc_points`]), and seconds per image against latent size
//! ([`time_vs_latent_png`], the paper's figure 5a).
//!
//! Drawing uses `plotters` on an in-memory RGB bitmap, encoded with `image`.
//! Text is set in DejaVu Sans, compiled into the binary
//! (`assets/fonts/DejaVuSans.ttf`, Bitstream Vera licence beside it): no
//! system font, fontconfig or file is needed at run time.
//!
//! This layer stands apart: it names nothing else of the crate and is used by
//! [`crate::cli`].

mod plot;
mod text;

pub use plot::{roc_png, time_vs_latent_png};

use std::path::PathBuf;
use thiserror::Error;

/// Why a figure was not written. Every variant names the PNG file that was
/// asked for; nothing is written when a figure's input is refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Nothing to draw: no ROC curve at all, no latent label, no series, or
    /// no measured time in any series.
    #[error("{}: nothing to plot ({what})", path.display())]
    NoData {
        /// The figure's file.
        path: PathBuf,
        /// What was missing.
        what: &'static str,
    },
    /// A ROC point that is not a pair of rates in [0, 1] (NaN included).
    #[error("{}: ROC point ({fpr}, {tpr}) of class `{class}` is not in [0, 1] x [0, 1]", path.display())]
    InvalidRocPoint {
        /// The figure's file.
        path: PathBuf,
        /// The class whose curve holds the point.
        class: String,
        /// Its false positive rate.
        fpr: f64,
        /// Its true positive rate.
        tpr: f64,
    },
    /// An AUC that is NaN or outside [0, 1].
    #[error("{}: AUC {value} of class `{class}` is not in [0, 1]", path.display())]
    InvalidAuc {
        /// The figure's file.
        path: PathBuf,
        /// The class.
        class: String,
        /// The value given.
        value: f64,
    },
    /// A series with a different number of values than there are latent
    /// labels on the x axis.
    #[error("{}: series `{series}` has {found} values for {expected} latent labels", path.display())]
    LengthMismatch {
        /// The figure's file.
        path: PathBuf,
        /// The series.
        series: String,
        /// Number of x labels.
        expected: usize,
        /// Number of values in the series.
        found: usize,
    },
    /// A time that cannot sit on a logarithmic axis (NaN, infinite, zero or
    /// negative).
    #[error("{}: series `{series}` at `{label}`: {value} s is not a positive finite time", path.display())]
    InvalidSeconds {
        /// The figure's file.
        path: PathBuf,
        /// The series.
        series: String,
        /// The x label of the value.
        label: String,
        /// The value given.
        value: f64,
    },
    /// The drawing library failed (the bundled font not parsing, a layout
    /// that does not fit).
    #[error("{}: drawing failed: {message}", path.display())]
    Draw {
        /// The figure's file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// Encoding or writing the PNG file failed.
    #[error("{}: cannot write PNG: {source}", path.display())]
    Write {
        /// The figure's file.
        path: PathBuf,
        /// The encoder's or the file system's error.
        #[source]
        source: image::ImageError,
    },
}

/// One class's panel of the ROC figure.
///
/// Curves are lists of (false positive rate, true positive rate) points, each
/// coordinate in [0, 1], drawn in the given order (as [`roc_points`] returns
/// them: from (0, 0) to (1, 1)); `None` leaves that curve out (a class that
/// has no positive or no negative sample has none). AUCs, when given, lie in
/// [0, 1] and appear in the panel title with three decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurves {
    /// Class name, the start of the panel title.
    pub class: String,
    /// The plaintext classifier's curve, drawn solid.
    pub plain: Option<Vec<(f64, f64)>>,
    /// The encrypted classifier's curve, drawn dashed in another colour.
    pub encrypted: Option<Vec<(f64, f64)>>,
    /// The plaintext classifier's AUROC.
    pub auc_plain: Option<f64>,
    /// The encrypted classifier's AUROC.
    pub auc_encrypted: Option<f64>,
}

/// One line of the time-against-latent-size figure.
///
/// `seconds` holds one entry per x label, in the same order; `None` marks a
/// configuration that was not run (the line breaks there). Present values are
/// positive and finite (the y axis is logarithmic).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text, e.g. `ResNet20 gpu`.
    pub name: String,
    /// Seconds per image at each latent size.
    pub seconds: Vec<Option<f64>>,
}

/// The ROC curve of one class through every distinct score threshold, as
/// scikit-learn's `roc_curve(labels, scores, drop_intermediate=False)`
/// computes it.
///
/// Thresholds run from the highest score down; samples with tied scores enter
/// together (one step, drawn as a straight segment). The result starts at
/// (0, 0), then has one point per distinct score value, the last being
/// (1, 1); rates are exact counts divided once by the number of negatives
/// (x) and of positives (y), so they are non-decreasing in both coordinates.
///
/// Returns `None` when the curve is undefined: `labels` and `scores` of
/// different lengths, a score that is NaN or infinite, or no positive or no
/// negative label (including empty input).
pub fn roc_points(labels: &[bool], scores: &[f64]) -> Option<Vec<(f64, f64)>> {
    if labels.len() != scores.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut rest = order.as_slice();
    while let Some(&first) = rest.first() {
        // -0.0 and 0.0 sort next to each other and compare equal: one step.
        let tied = rest.iter().take_while(|&&i| scores[i] == scores[first]).count();
        for &i in &rest[..tied] {
            if labels[i] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        points.push((fp as f64 / negatives as f64, tp as f64 / positives as f64));
        rest = &rest[tied..];
    }
    Some(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_points_undefined_cases() {
        assert_eq!(roc_points(&[], &[]), None);
        assert_eq!(roc_points(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_points(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(roc_points(&[true, false], &[0.1]), None);
        assert_eq!(roc_points(&[true, false], &[0.1, f64::NAN]), None);
        assert_eq!(roc_points(&[true, false], &[f64::INFINITY, 0.0]), None);
    }

    #[test]
    fn roc_points_signed_zeros_tie() {
        let points = roc_points(&[true, false], &[0.0, -0.0]).unwrap();
        assert_eq!(points, vec![(0.0, 0.0), (1.0, 1.0)]);
    }
}
