//! The CLI's [`Observer`]: the pipeline's notes and progress on stderr, a
//! progress bar for `score`.

use crate::pipeline::{Event, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::OnceLock;

/// Shows pipeline events on stderr. Notes are always shown; evaluated sets
/// and the scorer's lines only where the command asked for them.
pub struct Stderr {
    /// Print a line per group of evaluated sets.
    sets: bool,
    /// Print the scorer's lines (start, merges).
    lines: bool,
    /// Show a bar of images when scoring starts.
    bar: bool,
    /// The scorer's bar, made when scoring starts, advanced per image.
    scoring_bar: OnceLock<ProgressBar>,
}

impl Stderr {
    /// Notes only.
    pub fn notes() -> Self {
        Stderr {
            sets: false,
            lines: false,
            bar: false,
            scoring_bar: OnceLock::new(),
        }
    }

    /// Notes, and a line per group of evaluated sets unless `quiet`.
    pub fn evaluation(quiet: bool) -> Self {
        Stderr {
            sets: !quiet,
            ..Self::notes()
        }
    }

    /// Notes, the scorer's lines unless `json`, and a bar of images.
    pub fn scoring(json: bool) -> Self {
        Stderr {
            lines: !json,
            bar: true,
            ..Self::notes()
        }
    }

    /// Clears the bar, if any.
    pub fn finish(&self) {
        if let Some(bar) = self.scoring_bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Stderr {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Note(note) => eprintln!("{note}"),
            Event::SetsEvaluated {
                first,
                last,
                sets,
                seconds,
                backend,
            } if self.sets => eprintln!("sets {first}..={last} of {sets}: {seconds:.2} s on the {backend}"),
            Event::Merged { folder, rows, failed } if self.lines => {
                eprintln!("merged {rows} rows ({failed} failed images) from {}", folder.display())
            }
            Event::ScoringStarted {
                model,
                images,
                done_before,
                to_go,
                encrypted,
                backend,
            } => {
                if self.lines {
                    eprintln!(
                        "{model} on {images} images ({done_before} done before, {to_go} to go), {}, backend {backend}",
                        if encrypted {
                            "plaintext and encrypted"
                        } else {
                            "plaintext only"
                        }
                    );
                }
                if self.bar {
                    let bar = ProgressBar::new(to_go as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, ETA {eta}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    let _ = self.scoring_bar.set(bar);
                }
            }
            Event::ImagesScored { images } => {
                if let Some(bar) = self.scoring_bar.get() {
                    bar.inc(images as u64);
                }
            }
            _ => {}
        }
    }
}
