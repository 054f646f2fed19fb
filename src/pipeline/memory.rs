//! Memory: how evaluation keys are held, how many image sets are evaluated
//! together, what the machine (or the cgroup a Slurm job or a Kubernetes
//! pod runs in) has left and what the process has used.

use super::observer::{Event, Observer};
use crate::ckks::{KeyMemory, Params};
use crate::he_nn::{Plan, DEFAULT_GPU_WEIGHT_BYTES};
use std::path::{Path, PathBuf};

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
    /// widest step, with the memory [`available_memory`] finds;
    /// [`Self::Auto`] notes it when it goes compact.
    pub fn resolve(self, params: &Params, plan: &Plan, observer: &dyn Observer) -> KeyMemory {
        self.resolve_within(params, plan, 1, available_memory(), observer)
    }

    /// [`Self::resolve`] beside the working memory of `sets` image sets
    /// held at once, with `available` bytes (`None`: unknown, so
    /// [`Self::Auto`] expands).
    pub fn resolve_within(
        self,
        params: &Params,
        plan: &Plan,
        sets: usize,
        available: Option<u64>,
        observer: &dyn Observer,
    ) -> KeyMemory {
        match self {
            KeyMemoryChoice::Expanded => KeyMemory::Expanded,
            KeyMemoryChoice::Compact => KeyMemory::Compact,
            KeyMemoryChoice::Auto => {
                let levels = plan.key_levels();
                let working = plan.working_memory_bytes(params.n()) * sets.max(1);
                let needed = (levels.memory_bytes(params, KeyMemory::Expanded) + working) as u64;
                match available {
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
    /// The key memory for `plan` under `params` ([`KeyMemoryChoice::resolve`],
    /// beside the fewest sets evaluation holds at once: a whole group of
    /// merged sets, or all `sets` when fewer), then the most sets up to `lockstep` and up to `sets` (those the
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
        Self::resolve_within(choice, lockstep, params, plan, sets, available_memory(), observer)
    }

    /// [`Self::resolve`] with `available` bytes (`None`: unknown, so
    /// nothing is lowered).
    pub fn resolve_within(
        choice: KeyMemoryChoice,
        lockstep: usize,
        params: &Params,
        plan: &Plan,
        sets: usize,
        available: Option<u64>,
        observer: &dyn Observer,
    ) -> Self {
        let fewest = plan.whole_groups(1).min(sets.max(1));
        let keys = choice.resolve_within(params, plan, fewest, available, observer);
        let wanted = lockstep.min(sets).max(1);
        let key_bytes = plan.key_levels().memory_bytes(params, keys) as u64;
        let working = (plan.working_memory_bytes(params.n()) as u64).max(1);
        let fits = available.map(|available| {
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

/// Memory this process can have now: [`MemorySources::available`] of the
/// running system.
pub fn available_memory() -> Option<u64> {
    MemorySources::default().available()
}

/// Where the memory this process may use is read: the kernel's
/// `meminfo`, the process's cgroup list and the cgroup file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySources {
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
    /// `/proc/self/cgroup`.
    pub self_cgroup: PathBuf,
    /// Where the cgroup file system is mounted: `/sys/fs/cgroup` (v2, or
    /// v1 with one folder per controller, `memory/` among them).
    pub cgroup_root: PathBuf,
}

impl Default for MemorySources {
    /// The running system's files.
    fn default() -> Self {
        MemorySources::under(Path::new("/"))
    }
}

impl MemorySources {
    /// The files at their usual places under `root` (a test's fixture
    /// folder; `/` for the running system).
    pub fn under(root: &Path) -> Self {
        MemorySources {
            meminfo: root.join("proc/meminfo"),
            self_cgroup: root.join("proc/self/cgroup"),
            cgroup_root: root.join("sys/fs/cgroup"),
        }
    }

    /// The memory this process can have now: the kernel's `MemAvailable`,
    /// lowered to the headroom of every memory cgroup it runs in (a Slurm
    /// job's, a Kubernetes pod's), v2 (`memory.max` less `memory.current`)
    /// or v1 (`memory.limit_in_bytes` less `memory.usage_in_bytes`), page
    /// cache the kernel can drop (`inactive_file`) not counted as used.
    /// Each cgroup from the process's own up to the mount's root is read
    /// (a container sees its own cgroup at the root). `None` when none of
    /// this can be read (not Linux).
    pub fn available(&self) -> Option<u64> {
        let host = std::fs::read_to_string(&self.meminfo).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        });
        let cgroup = self.cgroup_headroom();
        match (host, cgroup) {
            (Some(h), Some(c)) => Some(h.min(c)),
            (h, c) => h.or(c),
        }
    }

    /// The least headroom of the memory cgroups this process is in.
    fn cgroup_headroom(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.self_cgroup).ok()?;
        let mut least: Option<u64> = None;
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let files = if id == "0" && controllers.is_empty() {
                CgroupFiles::V2
            } else if controllers.split(',').any(|c| c == "memory") {
                CgroupFiles::V1
            } else {
                continue;
            };
            let mount = match files {
                CgroupFiles::V2 => self.cgroup_root.clone(),
                CgroupFiles::V1 => self.cgroup_root.join("memory"),
            };
            let relative = Path::new(path.trim_start_matches('/'));
            for dir in relative.ancestors().map(|a| mount.join(a)) {
                if let Some(headroom) = files.headroom(&dir) {
                    least = Some(least.map_or(headroom, |l| l.min(headroom)));
                }
            }
        }
        least
    }
}

/// Which cgroup version's files a folder has.
#[derive(Clone, Copy)]
enum CgroupFiles {
    /// `memory.max`, `memory.current`, `memory.stat` (`inactive_file`).
    V2,
    /// `memory.limit_in_bytes`, `memory.usage_in_bytes`, `memory.stat`
    /// (`total_inactive_file`).
    V1,
}

impl CgroupFiles {
    /// The limit of the cgroup at `dir` less what it uses (dropping page
    /// cache it could reclaim); `None` without a limit or its files.
    fn headroom(self, dir: &Path) -> Option<u64> {
        let (limit, usage, inactive) = match self {
            CgroupFiles::V2 => ("memory.max", "memory.current", "inactive_file"),
            CgroupFiles::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
        };
        let number = |file: &str| -> Option<u64> { std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok() };
        // `max` (v2) does not parse: no limit.
        let limit = number(limit)?;
        let usage = number(usage).unwrap_or(0);
        let reclaimable = std::fs::read_to_string(dir.join("memory.stat"))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (key, value) = l.split_once(' ')?;
                    (key == inactive).then(|| value.trim().parse::<u64>().ok()).flatten()
                })
            })
            .unwrap_or(0);
        Some(limit.saturating_sub(usage.saturating_sub(reclaimable)))
    }
}

/// The process's peak resident memory so far, from `/proc/self/status`
/// (`VmHWM`); `None` where the file does not exist (not Linux).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
