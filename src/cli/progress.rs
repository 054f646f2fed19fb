//! Progress on stderr: the CLI's [`Observer`] (the pipeline's notes, and a
//! bar of images for `score`, of image sets for `infer` and `run`, of keys
//! for `keygen`), and the [`bar`] that `bench` and `synth` advance.

use crate::pipeline::{Event, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::OnceLock;

/// A bar of `len` `unit` on stderr with the elapsed time and an ETA.
/// Hidden when `hidden` (a `--json` run) and, by indicatif, whenever stderr
/// is not a terminal. Lines printed meanwhile go through
/// [`ProgressBar::suspend`], so that the bar does not garble them.
pub fn bar(len: u64, unit: &str, hidden: bool) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// What an observer's bar counts, and so which events advance it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counts {
    /// No bar.
    Nothing,
    /// Images: made at [`Event::ScoringStarted`], advanced by
    /// [`Event::ImagesScored`].
    Images,
    /// Image sets: made with the observer, advanced by
    /// [`Event::SetsEvaluated`].
    Sets,
    /// Switching keys: made and advanced by [`Event::KeysGenerated`].
    Keys,
}

/// Shows pipeline events on stderr. Notes are always shown; evaluated sets
/// and the scorer's lines only where the command asked for them.
pub struct Stderr {
    /// Print a line per group of evaluated sets.
    sets: bool,
    /// Print the scorer's lines (start, merges).
    lines: bool,
    /// What the bar counts.
    counts: Counts,
    /// Whether the bar is hidden (`--json`).
    hidden: bool,
    /// The bar, once made.
    progress: OnceLock<ProgressBar>,
}

impl Stderr {
    /// Notes only.
    pub fn notes() -> Self {
        Stderr {
            sets: false,
            lines: false,
            counts: Counts::Nothing,
            hidden: true,
            progress: OnceLock::new(),
        }
    }

    /// Notes, and a line per group of evaluated sets unless `quiet`.
    pub fn evaluation(quiet: bool) -> Self {
        Stderr {
            sets: !quiet,
            ..Self::notes()
        }
    }

    /// Notes, and unless `json` a line per group of evaluated sets and a bar
    /// of the `sets` image sets.
    pub fn evaluation_bar(json: bool, sets: usize) -> Self {
        let this = Stderr {
            counts: Counts::Sets,
            hidden: json,
            ..Self::evaluation(json)
        };
        let _ = this.progress.set(bar(sets as u64, "image sets", json));
        this
    }

    /// Notes, and unless `json` a bar of the switching keys generated.
    pub fn keygen(json: bool) -> Self {
        Stderr {
            counts: Counts::Keys,
            hidden: json,
            ..Self::notes()
        }
    }

    /// Notes, the scorer's lines unless `json`, and a bar of images.
    pub fn scoring(json: bool) -> Self {
        Stderr {
            lines: !json,
            counts: Counts::Images,
            hidden: false,
            ..Self::notes()
        }
    }

    /// Clears the bar, if any.
    pub fn finish(&self) {
        if let Some(bar) = self.progress.get() {
            bar.finish_and_clear();
        }
    }

    /// Prints `line` on stderr, above the bar if one is shown.
    fn say(&self, line: std::fmt::Arguments<'_>) {
        match self.progress.get() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// The bar, when it counts `counts`.
    fn bar_of(&self, counts: Counts) -> Option<&ProgressBar> {
        self.progress.get().filter(|_| self.counts == counts)
    }
}

impl Observer for Stderr {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Note(note) => self.say(format_args!("{note}")),
            Event::SetsEvaluated {
                first,
                last,
                sets,
                seconds,
                backend,
            } => {
                if self.sets {
                    self.say(format_args!(
                        "sets {first}..={last} of {sets}: {seconds:.2} s on the {backend}"
                    ));
                }
                if let Some(bar) = self.bar_of(Counts::Sets) {
                    bar.inc((last + 1 - first) as u64);
                }
            }
            Event::Merged { folder, rows, failed } if self.lines => self.say(format_args!(
                "merged {rows} rows ({failed} failed images) from {}",
                folder.display()
            )),
            Event::ScoringStarted {
                model,
                images,
                done_before,
                to_go,
                encrypted,
                backend,
            } => {
                if self.lines {
                    self.say(format_args!(
                        "{model} on {images} images ({done_before} done before, {to_go} to go), {}, backend {backend}",
                        if encrypted {
                            "plaintext and encrypted"
                        } else {
                            "plaintext only"
                        }
                    ));
                }
                if self.counts == Counts::Images {
                    let _ = self.progress.set(bar(to_go as u64, "images", self.hidden));
                }
            }
            Event::ImagesScored { images } => {
                if let Some(bar) = self.bar_of(Counts::Images) {
                    bar.inc(images as u64);
                }
            }
            Event::KeysGenerated { done, total } if self.counts == Counts::Keys => {
                self.progress
                    .get_or_init(|| bar(total as u64, "switching keys", self.hidden))
                    .set_position(done as u64);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::{KeyLevels, KeyMemory, Params};
    use crate::pipeline::keys::generate_keys;
    use std::sync::Arc;

    /// Key generation reports 0 first and each key after: with the
    /// relinearization key and rotations 1, 2, 1 (one key) and 0 (none),
    /// 0, 1, 2, 3 of 3; the keygen bar ends at 3 of 3, hidden under
    /// `--json`.
    #[test]
    fn the_keygen_bar_counts_every_switching_key() {
        struct Record(std::sync::Mutex<Vec<(usize, usize)>>);
        impl Observer for Record {
            fn event(&self, event: Event<'_>) {
                if let Event::KeysGenerated { done, total } = event {
                    self.0.lock().unwrap().push((done, total));
                }
            }
        }
        let params = Arc::new(Params::preset("insecure-n12").unwrap());
        let levels = KeyLevels::top(&params, &[1, 2, 1, 0]);
        let record = Record(Default::default());
        let (_, keys, _) = generate_keys(&params, &levels, KeyMemory::Compact, &record);
        assert_eq!(*record.0.lock().unwrap(), [(0, 3), (1, 3), (2, 3), (3, 3)]);
        assert_eq!(keys.rotations(), [1, 2]);

        let observer = Stderr::keygen(true);
        generate_keys(&params, &levels, KeyMemory::Compact, &observer);
        let bar = observer.progress.get().unwrap();
        assert!(bar.is_hidden());
        assert_eq!((bar.position(), bar.length()), (3, Some(3)));
    }

    /// A sets bar advances by whole groups; an images bar ignores sets.
    #[test]
    fn bars_count_only_their_own_events() {
        let sets = |first, last| Event::SetsEvaluated {
            first,
            last,
            sets: 5,
            seconds: 0.0,
            backend: "cpu",
        };
        let observer = Stderr::evaluation_bar(true, 5);
        observer.event(sets(1, 2));
        observer.event(sets(3, 3));
        observer.event(Event::ImagesScored { images: 7 });
        let bar = observer.progress.get().unwrap();
        assert!(bar.is_hidden());
        assert_eq!((bar.position(), bar.length()), (3, Some(5)));

        let observer = Stderr::scoring(true);
        observer.event(Event::ScoringStarted {
            model: "m",
            images: 9,
            done_before: 1,
            to_go: 8,
            encrypted: false,
            backend: "cpu",
        });
        observer.event(sets(1, 2));
        observer.event(Event::ImagesScored { images: 3 });
        let bar = observer.progress.get().unwrap();
        assert_eq!((bar.position(), bar.length()), (3, Some(8)));
    }
}
