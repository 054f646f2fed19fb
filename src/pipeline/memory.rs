//! Memory: how evaluation keys are held, how many image sets are evaluated
//! together, what the machine has left and what the process has used.

use super::observer::{Event, Observer};
use crate::ckks::{KeyMemory, Params};
use crate::he_nn::{Plan, DEFAULT_GPU_WEIGHT_BYTES};

/// How evaluation keys are to be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMemoryChoice {
    /// Expanded when keys and working memory fit in 90% of the memory
    /// available now, else compact.
    Auto,
    /// Always expanded (fastest).
    Expanded,
    /// Always compact (half the memory; each key switch re-expands the
    /// uniform halves it reads).
    Compact,
}

impl KeyMemoryChoice {
    /// The key memory for the keys `plan` uses under `params`, beside its
    /// widest step; [`Self::Auto`] notes it when it goes compact.
    pub fn resolve(self, params: &Params, plan: &Plan, observer: &dyn Observer) -> KeyMemory {
        match self {
            KeyMemoryChoice::Expanded => KeyMemory::Expanded,
            KeyMemoryChoice::Compact => KeyMemory::Compact,
            KeyMemoryChoice::Auto => {
                let levels = plan.key_levels();
                let working = plan.working_memory_bytes(params.n());
                let needed = (levels.memory_bytes(params, KeyMemory::Expanded) + working) as u64;
                match available_memory() {
                    Some(available) if needed > available / 10 * 9 => {
                        observer.event(Event::Note(&format!(
                            "note: expanded keys and working memory need {:.1} GB, {:.1} GB is available: \
                             holding the keys compact ({:.1} GB; --key-memory expanded forces the faster way)",
                            needed as f64 / 1e9,
                            available as f64 / 1e9,
                            levels.memory_bytes(params, KeyMemory::Compact) as f64 / 1e9
                        )));
                        KeyMemory::Compact
                    }
                    _ => KeyMemory::Expanded,
                }
            }
        }
    }
}

/// How an encrypted evaluation holds its keys and its weights, and how
/// many image sets it evaluates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalMemory {
    /// How the evaluation keys are held.
    pub keys: KeyMemory,
    /// Image sets evaluated in lockstep, at least 1; from
    /// [`EvalMemory::resolve`], whole groups of merged sets
    /// ([`Plan::whole_groups`]) unless it covers every set. Evaluation
    /// rounds it up to whole groups in any case.
    pub lockstep: usize,
    /// Bytes of weight plaintexts a GPU evaluation keeps on the device for
    /// later images ([`crate::he_nn::WeightStore`]); from
    /// [`EvalMemory::resolve`], [`DEFAULT_GPU_WEIGHT_BYTES`].
    pub weights: u64,
}

impl EvalMemory {
    /// The key memory for `plan` under `params` ([`KeyMemoryChoice::resolve`]),
    /// then the most sets up to `lockstep` and up to `sets` (those the
    /// caller has) whose working memory fits beside those keys in 90% of
    /// the memory available now (at least one); notes it when memory
    /// lowers the count. The count is then rounded up to whole groups of
    /// merged sets ([`Plan::sets_per_output`]), at most `sets`: the plan's
    /// merges need every set of a group at once.
    pub fn resolve(
        choice: KeyMemoryChoice,
        lockstep: usize,
        params: &Params,
        plan: &Plan,
        sets: usize,
        observer: &dyn Observer,
    ) -> Self {
        let keys = choice.resolve(params, plan, observer);
        let wanted = lockstep.min(sets).max(1);
        let key_bytes = plan.key_levels().memory_bytes(params, keys) as u64;
        let working = (plan.working_memory_bytes(params.n()) as u64).max(1);
        let fits = available_memory().map(|available| {
            let fits = ((available / 10 * 9).saturating_sub(key_bytes) / working).max(1) as usize;
            if fits < wanted {
                observer.event(Event::Note(&format!(
                    "note: {wanted} sets in lockstep need {:.1} GB of working memory beside {:.1} GB of keys, \
                     {:.1} GB is available: evaluating {fits} together",
                    (working * wanted as u64) as f64 / 1e9,
                    key_bytes as f64 / 1e9,
                    available as f64 / 1e9
                )));
            }
            fits
        });
        let lockstep = fits.map_or(wanted, |f| f.min(wanted));
        let merged = plan.whole_groups(lockstep).min(sets.max(1));
        if fits.is_some_and(|f| merged > f) {
            observer.event(Event::Note(&format!(
                "note: the plan merges {} sets into one after its strides, and a group needs all of them at once: \
                 evaluating {merged} together, more than the memory estimate allows",
                plan.sets_per_output()
            )));
        }
        EvalMemory {
            keys,
            lockstep: merged,
            weights: DEFAULT_GPU_WEIGHT_BYTES,
        }
    }
}

/// The name of a key memory in reports.
pub fn key_memory_name(memory: KeyMemory) -> &'static str {
    match memory {
        KeyMemory::Expanded => "expanded",
        KeyMemory::Compact => "compact",
    }
}

/// Memory the kernel can give this process now (`MemAvailable`), `None`
/// where `/proc/meminfo` does not exist (not Linux).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The process's peak resident memory so far, from `/proc/self/status`
/// (`VmHWM`); `None` where the file does not exist (not Linux).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
