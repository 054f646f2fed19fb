//! The registry of keys and jobs, and the worker that evaluates queued jobs.
//!
//! Jobs wait in arrival order. The worker takes the oldest and, with it,
//! every other queued job for the same key, and evaluates them in lockstep
//! (each weight plaintext encoded once for all of them; merges keep each
//! job's images in its own output ciphertexts). Every change of a job's state is written
//! to its record before it is visible, so a restart finds each job queued,
//! done or failed: a job found running is queued again, at most
//! [`MAX_ATTEMPTS`] times in all, then failed with the reason.

use super::engine::Engine;
use super::store::{KeyRecord, Store, JOB_INPUT, JOB_OUTPUT, KEY_FILE};
use super::ServiceError;
use crate::ckks::serialize::save_ciphertexts;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Runs of one job (the first and the reruns after restarts) before it is
/// failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for the worker.
    Queued,
    /// Being evaluated.
    Running,
    /// Its encrypted logits can be fetched.
    Done,
    /// It will not run; `reason` says why.
    Failed,
}

/// A job as stored and as `GET /v1/jobs/ID` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its handle (32 hex digits).
    pub id: String,
    /// The token name that submitted it.
    pub owner: String,
    /// The served model.
    pub model: String,
    /// The registered key it was encrypted under.
    pub key_id: String,
    /// Images in its input.
    pub images: usize,
    /// Sets of ciphertexts in its input.
    pub sets: usize,
    /// Where it is.
    pub state: JobState,
    /// Sets evaluated so far in the current run (all of them once done).
    pub sets_done: usize,
    /// Why it failed, or a note (requeued after a restart).
    pub reason: Option<String>,
    /// Runs started, counting the current one.
    pub attempts: u32,
    /// Submitted (seconds since the Unix epoch).
    pub created_unix: u64,
    /// Seconds its run took, shared among the jobs evaluated with it.
    pub seconds: Option<f64>,
}

/// What the service has done since it started, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Images evaluated.
    pub images: u64,
    /// Seconds of evaluation.
    pub seconds: f64,
    /// Key switches evaluated.
    pub key_switches: u64,
}

#[derive(Default)]
struct Table {
    keys: HashMap<String, KeyRecord>,
    jobs: HashMap<String, JobRecord>,
    queue: VecDeque<String>,
    totals: Totals,
}

/// Keys and jobs, shared by the HTTP handlers and the worker.
pub struct Registry {
    store: Store,
    engine: Arc<Engine>,
    table: Mutex<Table>,
    wake: Condvar,
}

impl Registry {
    /// Opens the registry on `store`: every registered key, every job;
    /// jobs that were running when the process stopped are queued again or
    /// failed (after [`MAX_ATTEMPTS`]), and the change is written.
    ///
    /// # Errors
    /// A record that cannot be read or written.
    pub fn open(store: Store, engine: Arc<Engine>) -> Result<Self, ServiceError> {
        let mut table = Table::default();
        for key in store.keys()? {
            table.keys.insert(key.id.clone(), key);
        }
        let mut jobs: Vec<JobRecord> = store.jobs()?;
        jobs.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        for mut job in jobs {
            if job.state == JobState::Running {
                job.sets_done = 0;
                if job.attempts >= MAX_ATTEMPTS {
                    job.state = JobState::Failed;
                    job.reason = Some(format!("the server stopped during each of its {} runs", job.attempts));
                } else {
                    job.state = JobState::Queued;
                    job.reason = Some("queued again: the server stopped while it ran".into());
                }
                store.save_job(&job.id, &job)?;
            }
            if job.state == JobState::Queued {
                table.queue.push_back(job.id.clone());
            }
            table.jobs.insert(job.id.clone(), job);
        }
        Ok(Self {
            store,
            engine,
            table: Mutex::new(table),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("the registry is not poisoned")
    }

    /// The store under the registry.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The engine the worker evaluates with.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Key `id`, if registered.
    pub fn key(&self, id: &str) -> Option<KeyRecord> {
        self.lock().keys.get(id).cloned()
    }

    /// The path of key `id`'s file.
    pub fn key_path(&self, id: &str) -> PathBuf {
        self.store.key_dir(id).join(KEY_FILE)
    }

    /// Bytes of keys `owner` has registered.
    pub fn key_bytes(&self, owner: &str) -> u64 {
        self.lock()
            .keys
            .values()
            .filter(|k| k.owner == owner)
            .map(|k| k.bytes)
            .sum()
    }

    /// Registers the checked key file at `upload` as `record`; `false` when
    /// it was registered already.
    ///
    /// # Errors
    /// The store failing.
    pub fn add_key(&self, upload: &std::path::Path, record: KeyRecord) -> Result<bool, ServiceError> {
        let mut table = self.lock();
        let added = self.store.add_key(upload, &record)?;
        table.keys.entry(record.id.clone()).or_insert(record);
        Ok(added)
    }

    /// Removes key `id`; `false` while a queued or running job uses it.
    ///
    /// # Errors
    /// The store failing.
    pub fn remove_key(&self, id: &str) -> Result<bool, ServiceError> {
        let mut table = self.lock();
        let busy = table
            .jobs
            .values()
            .any(|j| j.key_id == id && matches!(j.state, JobState::Queued | JobState::Running));
        if busy {
            return Ok(false);
        }
        self.store.remove_key(id)?;
        table.keys.remove(id);
        Ok(true)
    }

    /// Job `id`, if any.
    pub fn job(&self, id: &str) -> Option<JobRecord> {
        self.lock().jobs.get(id).cloned()
    }

    /// The path of job `id`'s encrypted logits.
    pub fn output_path(&self, id: &str) -> PathBuf {
        self.store.job_dir(id).join(JOB_OUTPUT)
    }

    /// Jobs of `owner` queued or running.
    pub fn active_jobs(&self, owner: &str) -> usize {
        self.lock()
            .jobs
            .values()
            .filter(|j| j.owner == owner && matches!(j.state, JobState::Queued | JobState::Running))
            .count()
    }

    /// Queues `record` with the checked input at `upload`.
    ///
    /// # Errors
    /// The store failing.
    pub fn submit(&self, upload: &std::path::Path, record: JobRecord) -> Result<(), ServiceError> {
        let mut table = self.lock();
        self.store.add_job(&record.id, upload, &record)?;
        table.queue.push_back(record.id.clone());
        table.jobs.insert(record.id.clone(), record);
        self.wake.notify_all();
        Ok(())
    }

    /// Removes job `id` and its files; `false` while it runs.
    ///
    /// # Errors
    /// The store failing.
    pub fn remove_job(&self, id: &str) -> Result<bool, ServiceError> {
        let mut table = self.lock();
        if table.jobs.get(id).is_some_and(|j| j.state == JobState::Running) {
            return Ok(false);
        }
        let dir = self.store.job_dir(id);
        std::fs::remove_dir_all(&dir).map_err(ServiceError::io(&dir))?;
        table.jobs.remove(id);
        table.queue.retain(|q| q != id);
        Ok(true)
    }

    /// Jobs waiting, jobs by state, and the totals since start.
    pub fn counts(&self) -> (usize, [(JobState, usize); 4], Totals) {
        let table = self.lock();
        let count = |s| table.jobs.values().filter(|j| j.state == s).count();
        let states = [JobState::Queued, JobState::Running, JobState::Done, JobState::Failed].map(|s| (s, count(s)));
        (table.queue.len(), states, table.totals)
    }

    /// Whether nothing is queued or running.
    pub fn idle(&self) -> bool {
        let table = self.lock();
        table.queue.is_empty() && !table.jobs.values().any(|j| j.state == JobState::Running)
    }

    /// The oldest queued job and every other queued job for the same key
    /// that evaluates with it, all marked running (and written so).
    fn take_group(&self) -> Result<Vec<JobRecord>, ServiceError> {
        let mut table = self.lock();
        while table.queue.is_empty() {
            table = self.wake.wait(table).expect("the registry is not poisoned");
        }
        let first = table.queue.pop_front().expect("the queue is not empty");
        let key_id = table.jobs[&first].key_id.clone();
        let mut ids = vec![first];
        let together: Vec<String> = table
            .queue
            .iter()
            .filter(|q| table.jobs[*q].key_id == key_id)
            .cloned()
            .collect();
        table.queue.retain(|q| !together.contains(q));
        ids.extend(together);
        let mut group = Vec::with_capacity(ids.len());
        for id in ids {
            let job = table.jobs.get_mut(&id).expect("queued jobs are in the table");
            job.state = JobState::Running;
            job.attempts += 1;
            job.sets_done = 0;
            self.store.save_job(&id, job)?;
            group.push(job.clone());
        }
        Ok(group)
    }

    /// Evaluates queued jobs, a group at a time, forever.
    pub fn work(&self) {
        loop {
            let group = match self.take_group() {
                Ok(group) => group,
                Err(e) => {
                    eprintln!("error: the job queue: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            self.run_group(&group);
        }
    }

    fn run_group(&self, group: &[JobRecord]) {
        let start = Instant::now();
        let key = self.key(&group[0].key_id);
        let result = key.ok_or_else(|| "its key was removed".to_string()).and_then(|key| {
            let inputs: Vec<PathBuf> = group
                .iter()
                .map(|j| self.store.job_dir(&j.id).join(JOB_INPUT))
                .collect();
            let progress = |done: usize, _total: usize| self.record_progress(group, done);
            let outputs = self
                .engine
                .evaluate(&key, &self.key_path(&key.id), &inputs, &progress)?;
            let params = self
                .engine
                .planned(&key.model, key.batch, &key.preset)?
                .params()
                .clone();
            for (job, out) in group.iter().zip(&outputs) {
                save_ciphertexts(&self.output_path(&job.id), out, &params).map_err(|e| e.to_string())?;
            }
            Ok(self.engine.key_switches(&key, group.iter().map(|j| j.sets).sum()))
        });
        let seconds = start.elapsed().as_secs_f64();
        let images: usize = group.iter().map(|j| j.images).sum();
        let mut table = self.lock();
        if let Ok(switches) = result {
            table.totals.images += images as u64;
            table.totals.seconds += seconds;
            table.totals.key_switches += switches as u64;
        }
        for job in group {
            let Some(record) = table.jobs.get_mut(&job.id) else {
                continue;
            };
            match &result {
                Ok(_) => {
                    record.state = JobState::Done;
                    record.sets_done = record.sets;
                    record.reason = None;
                    record.seconds = Some(seconds * record.images as f64 / images.max(1) as f64);
                    let _ = std::fs::remove_file(self.store.job_dir(&job.id).join(JOB_INPUT));
                }
                Err(reason) => {
                    record.state = JobState::Failed;
                    record.reason = Some(reason.clone());
                }
            }
            if let Err(e) = self.store.save_job(&job.id, record) {
                eprintln!("error: job {}: {e}", job.id);
            }
        }
    }

    /// Spreads `done` sets of a group's run over its jobs, in order.
    fn record_progress(&self, group: &[JobRecord], mut done: usize) {
        let mut table = self.lock();
        for job in group {
            if let Some(record) = table.jobs.get_mut(&job.id) {
                record.sets_done = done.min(record.sets);
                done -= record.sets_done;
            }
        }
    }
}
