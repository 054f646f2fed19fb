//! Multi-label classification metrics: AUROC and F1, per class and averaged
//! (micro, macro, weighted), for `N` samples x `C` classes with 0/1 labels and
//! real-valued scores (probabilities).
//!
//! Definitions, chosen to match scikit-learn:
//!
//! - **AUROC** of one class is the area under the ROC curve drawn through the
//!   distinct score values (tied scores form one threshold step, joined by a
//!   straight segment), which equals the Mann-Whitney statistic
//!   `(#{pos > neg} + #{pos = neg} / 2) / (P * Q)` over all positive/negative
//!   pairs; this is `sklearn.metrics.roc_auc_score`. It is computed from exact
//!   integer pair counts after one `O(n log n)` sort, with a single rounding in
//!   the final division (exact counts up to 2^53 pairs).
//!   A class whose labels are all 0 or all 1 has no AUROC: it is reported as
//!   `None`, listed in [`MultiLabelMetrics::skipped_classes`], and left out of
//!   every average. Over the kept classes: micro = AUROC of the flattened
//!   labels/scores of those classes; macro = plain mean; weighted = mean
//!   weighted by the number of positive labels.
//! - **F1** predicts positive when `score >= THRESHOLD` (0.5; note `>=`, as in
//!   the common `scores >= 0.5`), then per class `F1 = 2 TP / (2 TP + FP + FN)`
//!   with 0 when the denominator is 0; micro pools TP/FP/FN over classes, macro
//!   is the plain mean over all classes, weighted weights by the number of
//!   positive labels (0 when there are none). This is
//!   `f1_score(average=None|'micro'|'macro'|'weighted', zero_division=0)`.
//!
//! Scores are not required to lie in [0, 1] (approximate encrypted sigmoids
//! may overshoot slightly); only finiteness is checked. AUROC depends only on
//! their order; F1 assumes probabilities through the 0.5 threshold.

use ndarray::ArrayView2;
use serde_json::{json, Map, Value};
use thiserror::Error;

/// The F1 decision threshold: a score `s` predicts positive iff `s >= THRESHOLD`.
pub const THRESHOLD: f64 = 0.5;

/// Inputs the metrics refuse. Sample and class positions are 0-based.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum MetricsError {
    /// Labels and scores of different shapes.
    #[error("shape mismatch: labels are {labels_samples} samples x {labels_classes} classes, scores are {scores_samples} x {scores_classes}")]
    ShapeMismatch {
        /// Rows of the labels.
        labels_samples: usize,
        /// Columns of the labels.
        labels_classes: usize,
        /// Rows of the scores.
        scores_samples: usize,
        /// Columns of the scores.
        scores_classes: usize,
    },
    /// No sample or no class.
    #[error("empty input: {samples} samples x {classes} classes (need at least one of each)")]
    Empty {
        /// Samples given.
        samples: usize,
        /// Classes given.
        classes: usize,
    },
    /// A label other than 0 or 1.
    #[error("label {value} at sample {sample}, class {class} is not 0 or 1")]
    InvalidLabel {
        /// Sample (row).
        sample: usize,
        /// Class (column).
        class: usize,
        /// The value found.
        value: f64,
    },
    /// A NaN or infinite score.
    #[error("score at sample {sample}, class {class} is not finite ({value})")]
    NonFiniteScore {
        /// Sample (row).
        sample: usize,
        /// Class (column).
        class: usize,
        /// The value found.
        value: f64,
    },
    /// Class lists of different lengths.
    #[error("the labels name {labels} classes, the scores name {scores}")]
    ClassCount {
        /// Classes named by the labels.
        labels: usize,
        /// Classes named by the scores.
        scores: usize,
    },
    /// Class lists that differ at some position.
    #[error("class {class} is `{labels}` in the labels but `{scores}` in the scores (same classes in the same order required)")]
    ClassName {
        /// Position of the first difference.
        class: usize,
        /// Name in the labels.
        labels: String,
        /// Name in the scores.
        scores: String,
    },
}

/// A metric averaged over classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Averages {
    /// Pooled over all (sample, class) pairs of the classes averaged.
    pub micro: f64,
    /// Unweighted mean of the per-class values.
    pub macro_avg: f64,
    /// Mean of the per-class values weighted by each class's positive count.
    pub weighted: f64,
}

/// AUROC and F1 of a multi-label classifier; see the module doc for the
/// definitions.
///
/// Invariants: every per-class vector has one entry per class, in input order;
/// `auroc_per_class[j]` is `None` exactly for the `j` in `skipped_classes`
/// (increasing), which are the classes with `positives[j]` equal to 0 or to
/// `samples`; `auroc` is `None` exactly when every class is skipped; every
/// value lies in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelMetrics {
    /// Number of samples `N` (at least 1).
    pub samples: usize,
    /// AUROC per class, `None` where undefined.
    pub auroc_per_class: Vec<Option<f64>>,
    /// AUROC averages over the non-skipped classes, `None` if there are none.
    pub auroc: Option<Averages>,
    /// F1 per class at [`THRESHOLD`].
    pub f1_per_class: Vec<f64>,
    /// F1 averages over all classes.
    pub f1: Averages,
    /// Classes whose AUROC is undefined (labels all 0 or all 1).
    pub skipped_classes: Vec<usize>,
    /// Number of positive labels per class (the weights of `weighted`).
    pub positives: Vec<usize>,
    /// Number of predicted positives per class (`score >= THRESHOLD`).
    pub predicted_positives: Vec<usize>,
}

/// Checks that two class lists (the labels' and the scores' headers) name the
/// same classes in the same order.
pub fn check_class_names<S: AsRef<str>>(labels: &[S], scores: &[S]) -> Result<(), MetricsError> {
    if labels.len() != scores.len() {
        return Err(MetricsError::ClassCount {
            labels: labels.len(),
            scores: scores.len(),
        });
    }
    match labels.iter().zip(scores).position(|(a, b)| a.as_ref() != b.as_ref()) {
        Some(class) => Err(MetricsError::ClassName {
            class,
            labels: labels[class].as_ref().to_string(),
            scores: scores[class].as_ref().to_string(),
        }),
        None => Ok(()),
    }
}

/// F1 from confusion counts: `2 tp / (2 tp + fp + fn)`, or 0 when that
/// denominator is 0 (scikit-learn's `zero_division=0`). Exact counts, one
/// rounding for counts below 2^52.
pub fn f1_from_counts(tp: usize, fp: usize, fn_: usize) -> f64 {
    let denom = 2 * tp as u128 + fp as u128 + fn_ as u128;
    if denom == 0 {
        0.0
    } else {
        (2 * tp as u128) as f64 / denom as f64
    }
}

/// AUROC of `(score, is_positive)` pairs; `None` when the pairs hold no
/// positive or no negative. Reorders `pairs`. Scores must be finite (callers
/// check); `-0.0` and `0.0` count as tied, as in numpy.
fn auroc_of_pairs(pairs: &mut [(f64, bool)]) -> Option<f64> {
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Twice the Mann-Whitney U: each (pos, neg) pair with pos above counts 2,
    // each tied pair counts 1. Ascending walk, one group of equal scores at a time.
    let mut twice_u: u128 = 0;
    let mut negatives_below: u128 = 0;
    let mut positives_total: u128 = 0;
    let mut start = 0;
    while start < pairs.len() {
        let score = pairs[start].0;
        let mut end = start;
        let (mut pos, mut neg) = (0u128, 0u128);
        // total_cmp puts -0.0 right before 0.0, so `==` groups are contiguous.
        while end < pairs.len() && pairs[end].0 == score {
            if pairs[end].1 {
                pos += 1;
            } else {
                neg += 1;
            }
            end += 1;
        }
        twice_u += pos * (2 * negatives_below + neg);
        negatives_below += neg;
        positives_total += pos;
        start = end;
    }
    let pairs_total = positives_total * negatives_below;
    if pairs_total == 0 {
        return None;
    }
    Some(twice_u as f64 / (2 * pairs_total) as f64)
}

/// AUROC of one binary problem (`roc_auc_score(labels, scores)` with ties as
/// in the module doc). `Ok(None)` when `labels` are all `true` or all `false`.
///
/// Errors: different lengths, empty input, a non-finite score.
pub fn auroc(labels: &[bool], scores: &[f64]) -> Result<Option<f64>, MetricsError> {
    if labels.len() != scores.len() {
        return Err(MetricsError::ShapeMismatch {
            labels_samples: labels.len(),
            labels_classes: 1,
            scores_samples: scores.len(),
            scores_classes: 1,
        });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty { samples: 0, classes: 1 });
    }
    if let Some(sample) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFiniteScore {
            sample,
            class: 0,
            value: scores[sample],
        });
    }
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    Ok(auroc_of_pairs(&mut pairs))
}

/// Computes every metric of [`MultiLabelMetrics`] for `labels` and `scores`,
/// both `N x C` (rows are samples). Labels must be exactly 0.0 or 1.0, scores
/// finite. Time `O(C N log N)`, memory `O(C N)` (one copy for micro-AUROC).
///
/// Errors, checked in this order: shapes differ, `N` or `C` is zero, a label
/// that is not 0/1, a non-finite score (the first offender in row-major order).
pub fn evaluate(labels: ArrayView2<f64>, scores: ArrayView2<f64>) -> Result<MultiLabelMetrics, MetricsError> {
    let (n, c) = labels.dim();
    if scores.dim() != (n, c) {
        return Err(MetricsError::ShapeMismatch {
            labels_samples: n,
            labels_classes: c,
            scores_samples: scores.nrows(),
            scores_classes: scores.ncols(),
        });
    }
    if n == 0 || c == 0 {
        return Err(MetricsError::Empty { samples: n, classes: c });
    }
    for ((sample, class), &value) in labels.indexed_iter() {
        if value != 0.0 && value != 1.0 {
            return Err(MetricsError::InvalidLabel { sample, class, value });
        }
    }
    for ((sample, class), &value) in scores.indexed_iter() {
        if !value.is_finite() {
            return Err(MetricsError::NonFiniteScore { sample, class, value });
        }
    }

    let mut positives = vec![0usize; c];
    let mut predicted_positives = vec![0usize; c];
    let mut f1_per_class = vec![0.0; c];
    let mut auroc_per_class = vec![None; c];
    let mut skipped_classes = Vec::new();
    let (mut tp_all, mut fp_all, mut fn_all) = (0usize, 0usize, 0usize);
    let mut pooled: Vec<(f64, bool)> = Vec::new();
    for class in 0..c {
        let mut pairs: Vec<(f64, bool)> = scores
            .column(class)
            .iter()
            .zip(labels.column(class))
            .map(|(&s, &y)| (s, y == 1.0))
            .collect();
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for &(s, y) in &pairs {
            match (s >= THRESHOLD, y) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => {}
            }
        }
        positives[class] = tp + fn_;
        predicted_positives[class] = tp + fp;
        f1_per_class[class] = f1_from_counts(tp, fp, fn_);
        tp_all += tp;
        fp_all += fp;
        fn_all += fn_;
        if positives[class] == 0 || positives[class] == n {
            skipped_classes.push(class);
        } else {
            pooled.extend_from_slice(&pairs);
            auroc_per_class[class] = auroc_of_pairs(&mut pairs);
        }
    }

    let f1_macro = f1_per_class.iter().sum::<f64>() / c as f64;
    let total_positives: usize = positives.iter().sum();
    let f1_weighted = if total_positives == 0 {
        0.0
    } else {
        weighted_mean(f1_per_class.iter().copied().zip(positives.iter().copied()))
    };
    let f1 = Averages {
        micro: f1_from_counts(tp_all, fp_all, fn_all),
        macro_avg: f1_macro,
        weighted: f1_weighted,
    };

    let kept: Vec<(f64, usize)> = auroc_per_class
        .iter()
        .zip(&positives)
        .filter_map(|(a, &p)| a.map(|a| (a, p)))
        .collect();
    let auroc = match auroc_of_pairs(&mut pooled) {
        Some(micro) if !kept.is_empty() => Some(Averages {
            micro,
            macro_avg: kept.iter().map(|&(a, _)| a).sum::<f64>() / kept.len() as f64,
            weighted: weighted_mean(kept.iter().copied()),
        }),
        _ => None,
    };

    Ok(MultiLabelMetrics {
        samples: n,
        auroc_per_class,
        auroc,
        f1_per_class,
        f1,
        skipped_classes,
        positives,
        predicted_positives,
    })
}

/// `sum(w v) / sum(w)` over `(v, w)`; the caller guarantees `sum(w) > 0`.
fn weighted_mean(items: impl Iterator<Item = (f64, usize)> + Clone) -> f64 {
    let total: f64 = items.clone().map(|(_, w)| w as f64).sum();
    items.map(|(v, w)| v * w as f64).sum::<f64>() / total
}

fn averages_json(a: Option<&Averages>) -> (Value, Value, Value) {
    match a {
        Some(a) => (json!(a.micro), json!(a.macro_avg), json!(a.weighted)),
        None => (Value::Null, Value::Null, Value::Null),
    }
}

/// The JSON report: `{"auroc": {"micro", "macro", "weighted", "per_class"},
/// "f1": {..same..}, "skipped_classes": [names], "samples": N}`; AUROC values
/// are `null` where undefined. `names` has one entry per class of `m`.
pub fn report_json(names: &[String], m: &MultiLabelMetrics) -> Value {
    let auroc_per_class: Map<String, Value> = names
        .iter()
        .zip(&m.auroc_per_class)
        .map(|(n, a)| (n.clone(), a.map_or(Value::Null, |a| json!(a))))
        .collect();
    let f1_per_class: Map<String, Value> = names
        .iter()
        .zip(&m.f1_per_class)
        .map(|(n, f)| (n.clone(), json!(f)))
        .collect();
    let (a_micro, a_macro, a_weighted) = averages_json(m.auroc.as_ref());
    let (f_micro, f_macro, f_weighted) = averages_json(Some(&m.f1));
    let skipped: Vec<&String> = m.skipped_classes.iter().filter_map(|&j| names.get(j)).collect();
    json!({
        "auroc": {"micro": a_micro, "macro": a_macro, "weighted": a_weighted, "per_class": auroc_per_class},
        "f1": {"micro": f_micro, "macro": f_macro, "weighted": f_weighted, "per_class": f1_per_class},
        "skipped_classes": skipped,
        "samples": m.samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Brute force over all pairs: the definition itself.
    fn auroc_pairs_reference(labels: &[bool], scores: &[f64]) -> Option<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &yi) in labels.iter().enumerate() {
            for (j, &yj) in labels.iter().enumerate() {
                if yi && !yj {
                    den += 1.0;
                    if scores[i] > scores[j] {
                        num += 1.0;
                    } else if scores[i] == scores[j] {
                        num += 0.5;
                    }
                }
            }
        }
        (den > 0.0).then(|| num / den)
    }

    #[test]
    fn auroc_matches_pair_counting_on_random_tied_data() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for trial in 0..200 {
            let n = 1 + trial % 40;
            let labels: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.4)).collect();
            // Few distinct values so ties are frequent; include both zeros.
            let scores: Vec<f64> = (0..n)
                .map(|_| match rng.gen_range(0..6) {
                    0 => -0.0,
                    k => k as f64 / 5.0,
                })
                .collect();
            let got = auroc(&labels, &scores).unwrap();
            let want = auroc_pairs_reference(&labels, &scores);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{g} vs {w}"),
                (None, None) => {}
                other => panic!("definedness differs: {other:?}"),
            }
        }
    }

    #[test]
    fn auroc_degenerate_and_refusals() {
        assert_eq!(auroc(&[true, true], &[0.1, 0.2]), Ok(None));
        assert_eq!(auroc(&[false], &[0.1]), Ok(None));
        assert_eq!(auroc(&[true, false], &[0.3, 0.3]), Ok(Some(0.5)));
        assert_eq!(auroc(&[true, false], &[0.9, 0.3]), Ok(Some(1.0)));
        assert_eq!(auroc(&[true, false], &[0.3, 0.9]), Ok(Some(0.0)));
        assert!(matches!(auroc(&[true], &[]), Err(MetricsError::ShapeMismatch { .. })));
        assert!(matches!(auroc(&[], &[]), Err(MetricsError::Empty { .. })));
        assert!(matches!(
            auroc(&[true, false], &[0.1, f64::NAN]),
            Err(MetricsError::NonFiniteScore { sample: 1, .. })
        ));
    }

    #[test]
    fn f1_counts() {
        assert_eq!(f1_from_counts(0, 0, 0), 0.0);
        assert_eq!(f1_from_counts(0, 3, 2), 0.0);
        assert_eq!(f1_from_counts(1, 1, 0), 2.0 / 3.0);
        assert_eq!(f1_from_counts(4, 0, 0), 1.0);
    }

    #[test]
    fn threshold_is_inclusive() {
        let m = evaluate(array![[1.0], [0.0]].view(), array![[0.5], [0.4999999999999999]].view()).unwrap();
        assert_eq!(m.predicted_positives, [1]);
        assert_eq!(m.f1_per_class, [1.0]);
    }

    #[test]
    fn class_names() {
        assert_eq!(check_class_names(&["a", "b"], &["a", "b"]), Ok(()));
        assert_eq!(
            check_class_names(&["a", "b"], &["a"]),
            Err(MetricsError::ClassCount { labels: 2, scores: 1 })
        );
        assert_eq!(
            check_class_names(&["a", "b"], &["b", "a"]),
            Err(MetricsError::ClassName {
                class: 0,
                labels: "a".into(),
                scores: "b".into()
            })
        );
    }
}
