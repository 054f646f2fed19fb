//! Memory sizing under a cgroup limit (a Slurm job's, a Kubernetes pod's):
//! fixture files in the layout of `/proc` and `/sys/fs/cgroup`, v1 and v2.

mod common;

use latent_he::ckks::{KeyMemory, Params};
use latent_he::he_nn::Plan;
use latent_he::nn::{fold, LoadOptions, Model};
use latent_he::pipeline::memory::{EvalMemory, KeyMemoryChoice, MemorySources};
use latent_he::pipeline::Silent;
use std::path::Path;

const GB: u64 = 1_000_000_000;
/// A host with 24 GB available.
const HOST: u64 = 24 * GB;

/// Writes `files` (path under `root`, text) and returns the sources there;
/// the host always has 24 GB available.
fn system(root: &Path, files: &[(&str, String)]) -> MemorySources {
    let meminfo = format!(
        "MemTotal:       {} kB\nMemFree:        1000 kB\nMemAvailable:   {} kB\n",
        HOST / 1024 * 2,
        HOST / 1024
    );
    for (path, text) in [("proc/meminfo", meminfo)].iter().chain(files) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    MemorySources::under(root)
}

/// A Slurm job's cgroup v2 with a 4 GB limit, 300 MB used of which 100 MB
/// is droppable page cache; the step below it has no limit of its own.
fn slurm_v2(root: &Path) -> MemorySources {
    let job = "sys/fs/cgroup/system.slice/slurmstepd.scope/job_42";
    system(
        root,
        &[
            (
                "proc/self/cgroup",
                "0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n".into(),
            ),
            (&format!("{job}/memory.max"), format!("{}\n", 4 * GB)),
            (&format!("{job}/memory.current"), format!("{}\n", 300_000_000)),
            (
                &format!("{job}/memory.stat"),
                "anon 200000000\ninactive_file 100000000\n".into(),
            ),
            (&format!("{job}/step_0/memory.max"), "max\n".into()),
            (&format!("{job}/step_0/memory.current"), "250000000\n".into()),
            ("sys/fs/cgroup/memory.current", "9000000000\n".into()),
        ],
    )
}

/// A container's cgroup v1 (its own cgroup mounted at the root; the path
/// in /proc/self/cgroup is the host's) with a 4 GB limit, 200 MB used.
fn docker_v1(root: &Path) -> MemorySources {
    system(
        root,
        &[
            (
                "proc/self/cgroup",
                "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n1:name=systemd:/docker/abc\n".into(),
            ),
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", format!("{}\n", 4 * GB)),
            ("sys/fs/cgroup/memory/memory.usage_in_bytes", "200000000\n".into()),
            (
                "sys/fs/cgroup/memory/memory.stat",
                "cache 0\ntotal_inactive_file 0\n".into(),
            ),
        ],
    )
}

#[test]
fn cgroup_limits_v1_and_v2_lower_the_memory_available() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = slurm_v2(&dir.path().join("v2"));
    assert_eq!(v2.available(), Some(4 * GB - 200_000_000));
    let v1 = docker_v1(&dir.path().join("v1"));
    assert_eq!(v1.available(), Some(4 * GB - 200_000_000));
    // no limit: v2 `max`, v1's "unlimited" page-rounded i64::MAX
    let free_v2 = system(
        &dir.path().join("free2"),
        &[
            ("proc/self/cgroup", "0::/\n".into()),
            ("sys/fs/cgroup/memory.max", "max\n".into()),
        ],
    );
    assert_eq!(free_v2.available(), Some(HOST));
    let free_v1 = system(
        &dir.path().join("free1"),
        &[
            ("proc/self/cgroup", "4:memory:/\n".into()),
            (
                "sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n".into(),
            ),
            ("sys/fs/cgroup/memory/memory.usage_in_bytes", "5000000000\n".into()),
        ],
    );
    assert_eq!(free_v1.available(), Some(HOST));
    // a limit tighter than the host's memory but more than it has left
    let loose = system(
        &dir.path().join("loose"),
        &[
            ("proc/self/cgroup", "0::/\n".into()),
            ("sys/fs/cgroup/memory.max", format!("{}\n", 64 * GB)),
            ("sys/fs/cgroup/memory.current", "0\n".into()),
        ],
    );
    assert_eq!(loose.available(), Some(HOST));
}

/// ResNet20 at f=8 on n16 (2.7 GB of expanded keys, 0.28 GB of working
/// memory per set, groups of 16 merged sets) with 4 sets to score: on the
/// 24 GB host the keys stay expanded and the 4 sets go in lockstep; in a
/// 4 GB job the keys and the sets' working memory fit in 90% of what the
/// job has left (the 4 sets are one merge group, held at once whatever
/// `--lockstep` says, so the keys go compact).
#[test]
fn key_memory_and_lockstep_fit_a_4_gb_job_on_a_24_gb_host() {
    let model = fold(
        &Model::load(
            Path::new(&common::fixture("resnet20_f8.safetensors")),
            &LoadOptions::default(),
        )
        .unwrap(),
    );
    let params = Params::preset("n16").unwrap();
    let plan = Plan::for_params(&model, &params, 1).unwrap();
    let working = plan.working_memory_bytes(params.n()) as u64;
    let keys = |m: KeyMemory| plan.key_levels().memory_bytes(&params, m) as u64;
    println!(
        "keys expanded {} B, compact {} B, working memory per set {working} B",
        keys(KeyMemory::Expanded),
        keys(KeyMemory::Compact)
    );
    let dir = tempfile::tempdir().unwrap();
    let resolve = |sources: &MemorySources| {
        EvalMemory::resolve_within(
            KeyMemoryChoice::Auto,
            4,
            &params,
            &plan,
            4,
            sources.available(),
            &Silent,
        )
    };
    assert_eq!(plan.sets_per_output(), 16);
    let host = resolve(&system(&dir.path().join("host"), &[]));
    assert_eq!((host.keys, host.lockstep), (KeyMemory::Expanded, 4), "{host:?}");
    for sources in [slurm_v2(&dir.path().join("v2")), docker_v1(&dir.path().join("v1"))] {
        let job = resolve(&sources);
        let used = keys(job.keys) + working * job.lockstep as u64;
        let allowed = sources.available().unwrap() / 10 * 9;
        println!("{job:?}: {used} B of {allowed} B");
        assert!(used <= allowed, "{job:?}: {used} B past {allowed} B");
        assert!(job != host, "the limit changed nothing: {job:?}");
    }
}
