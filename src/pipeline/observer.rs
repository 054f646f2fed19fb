//! Progress out of the pipeline: the library prints nothing; it tells an
//! [`Observer`] what happens, and each front end shows it its own way (the
//! CLI on stderr with a progress bar, a server in its job status).

use std::path::Path;

/// One thing that happened.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A remark for the person running the work (a fallback taken, a
    /// setting lowered to what fits); one line.
    Note(&'a str),
    /// Image sets `first..=last` (1-based) of `sets` were evaluated on
    /// `backend` in `seconds`.
    SetsEvaluated {
        /// First set of the group, from 1.
        first: usize,
        /// Last set of the group.
        last: usize,
        /// Sets in the whole call.
        sets: usize,
        /// Seconds the group took.
        seconds: f64,
        /// The backend's name (`cpu`, `gpu`).
        backend: &'a str,
    },
    /// A merge folded in the rows of a part ([`crate::pipeline::score::merge`]).
    Merged {
        /// The part's folder.
        folder: &'a Path,
        /// Result rows taken.
        rows: usize,
        /// Failure rows taken.
        failed: usize,
    },
    /// The scorer is about to score `to_go` images.
    ScoringStarted {
        /// The model, as its spec names it.
        model: &'a str,
        /// Images in the (offset, limited) split.
        images: usize,
        /// Images finished in an earlier call or merged in.
        done_before: usize,
        /// Images this call scores.
        to_go: usize,
        /// Whether they are run encrypted too.
        encrypted: bool,
        /// The backend's name.
        backend: &'a str,
    },
    /// Key generation made `done` of its `total` switching keys (first with
    /// `done = 0`, when it starts on them).
    KeysGenerated {
        /// Keys made so far.
        done: usize,
        /// Keys it makes in all.
        total: usize,
    },
    /// The scorer finished `images` more images (scored or failed).
    ImagesScored {
        /// How many.
        images: usize,
    },
}

/// Receives the pipeline's [`Event`]s. Called from the thread doing the
/// work; it must return quickly.
pub trait Observer: Sync {
    /// One event.
    fn event(&self, event: Event<'_>);
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _event: Event<'_>) {}
}
