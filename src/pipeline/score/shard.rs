//! Shards: the I-th of N contiguous, disjoint parts of a split that cover
//! it exactly, for scoring one split on many machines (a Slurm job array,
//! a Kubernetes Indexed Job), each part into its own folder.

use crate::pipeline::PipelineError;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Most parts a split is cut into.
pub const MAX_SHARDS: usize = 1 << 20;

/// The `index`-th (from 0) of `count` parts of a split.
///
/// Invariant: `index < count <= MAX_SHARDS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The `index`-th (from 0) of `count` parts.
    ///
    /// # Errors
    /// [`PipelineError::Config`] unless `index < count <= MAX_SHARDS`.
    pub fn new(index: usize, count: usize) -> Result<Self, PipelineError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(PipelineError::Config(format!(
                "a split is cut into 1 to {MAX_SHARDS} shards, not {count}"
            )));
        }
        if index >= count {
            return Err(PipelineError::Config(format!(
                "shard {index} of {count} does not exist: shards count from 0 to {}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// `I/N` as written on a command line.
    ///
    /// # Errors
    /// [`PipelineError::Config`] for anything else, or an I/N that
    /// [`Shard::new`] refuses.
    pub fn parse(text: &str) -> Result<Self, PipelineError> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        let (index, count) =
            parsed.ok_or_else(|| PipelineError::Config(format!("`{text}` is not a shard: write I/N, as 0/4")))?;
        Shard::new(index, count)
    }

    /// The shard a scheduler names: a Slurm array task (`(task_id -
    /// task_min) / task_step` of `task_count`), else a Kubernetes Indexed
    /// Job's `completion_index` of `shards`; `None` when neither is there.
    ///
    /// # Errors
    /// [`PipelineError::Config`] for half a description (a task id without
    /// a count, a completion index without `shards`), a task id below the
    /// minimum or off the step, or a shard [`Shard::new`] refuses (an
    /// array given as a list of ids, `--array=1,5,7`, whose ids are not
    /// `MIN + k * STEP` for `k` below the count).
    pub fn from_scheduler(
        slurm: SlurmArray,
        completion_index: Option<usize>,
        shards: Option<usize>,
    ) -> Result<Option<Self>, PipelineError> {
        if let Some(id) = slurm.task_id {
            let count = slurm.task_count.ok_or_else(|| {
                PipelineError::Config("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
            })?;
            let min = slurm.task_min.unwrap_or(0);
            let step = slurm.task_step.unwrap_or(1).max(1);
            let offset = id.checked_sub(min).filter(|o| o % step == 0).ok_or_else(|| {
                PipelineError::Config(format!(
                    "SLURM_ARRAY_TASK_ID {id} is not SLURM_ARRAY_TASK_MIN {min} plus a multiple of \
                     SLURM_ARRAY_TASK_STEP {step}"
                ))
            })?;
            return Shard::new(offset / step, count).map(Some);
        }
        match (completion_index, shards) {
            (Some(index), Some(count)) => Shard::new(index, count).map(Some),
            (Some(_), None) => Err(PipelineError::Config(
                "JOB_COMPLETION_INDEX is set: --shards N says how many parts the split has".into(),
            )),
            (None, Some(_)) => Err(PipelineError::Config(
                "--shards needs the shard's index: --shard I/N, or JOB_COMPLETION_INDEX".into(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// The index, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many parts there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The rows of a split of `len` that this shard takes:
    /// `len * I / N .. len * (I + 1) / N`. The shards `0..N` are
    /// contiguous, disjoint and cover `0..len`; their sizes differ by at
    /// most one.
    pub fn range(&self, len: usize) -> Range<usize> {
        let at = |i: usize| (len as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// This shard's own folder under `out`: `shard-I-of-N`, I padded to
    /// N's width so that the folders sort in shard order.
    pub fn folder(&self, out: &Path) -> PathBuf {
        let width = (self.count - 1).to_string().len();
        out.join(format!("shard-{:0width$}-of-{}", self.index, self.count))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a Slurm job array task is told (`SLURM_ARRAY_TASK_ID`,
/// `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN`,
/// `SLURM_ARRAY_TASK_STEP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlurmArray {
    /// This task's id.
    pub task_id: Option<usize>,
    /// Tasks in the array.
    pub task_count: Option<usize>,
    /// The lowest task id (an array `--array=1-3` starts at 1).
    pub task_min: Option<usize>,
    /// The step between task ids (`--array=0-10:2` has 2).
    pub task_step: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_disjoint_and_cover_the_split() {
        for len in [0usize, 1, 2, 5, 7, 10, 101] {
            for count in 1..=12 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(len);
                    assert_eq!(r.start, next, "len {len}, {index}/{count}");
                    assert!(r.len() == len / count || r.len() == len / count + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn shards_come_from_the_command_line_or_the_scheduler() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard::new(2, 5).unwrap());
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let slurm = SlurmArray {
            task_id: Some(3),
            task_count: Some(3),
            task_min: Some(1),
            task_step: None,
        };
        assert_eq!(
            Shard::from_scheduler(slurm, None, None).unwrap(),
            Some(Shard::new(2, 3).unwrap())
        );
        let no_count = SlurmArray {
            task_count: None,
            ..slurm
        };
        assert!(Shard::from_scheduler(no_count, None, None).is_err());
        // --array=2-10:4: ids 2, 6, 10
        let stepped = SlurmArray {
            task_id: Some(6),
            task_count: Some(3),
            task_min: Some(2),
            task_step: Some(4),
        };
        assert_eq!(
            Shard::from_scheduler(stepped, None, None).unwrap(),
            Some(Shard::new(1, 3).unwrap())
        );
        let off_step = SlurmArray {
            task_id: Some(7),
            ..stepped
        };
        assert!(Shard::from_scheduler(off_step, None, None).is_err());
        // --array=1,5,7: not a range, refused rather than guessed
        let listed = SlurmArray {
            task_id: Some(7),
            task_count: Some(3),
            task_min: Some(1),
            task_step: None,
        };
        assert!(Shard::from_scheduler(listed, None, None).is_err());
        assert_eq!(
            Shard::from_scheduler(SlurmArray::default(), Some(4), Some(5)).unwrap(),
            Some(Shard::new(4, 5).unwrap())
        );
        assert!(Shard::from_scheduler(SlurmArray::default(), Some(4), None).is_err());
        assert!(Shard::from_scheduler(SlurmArray::default(), None, Some(4)).is_err());
        assert_eq!(Shard::from_scheduler(SlurmArray::default(), None, None).unwrap(), None);
        assert_eq!(
            Shard::new(3, 12).unwrap().folder(Path::new("o")),
            Path::new("o/shard-03-of-12")
        );
    }
}
