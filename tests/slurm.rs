//! A real single-node Slurm cluster (Debian's `slurm-wlm` and `munge`,
//! as root, `proctrack/linuxproc`, `task/none`; `.ci/run` installs them)
//! runs the bundled `deploy/slurm/score-array.sbatch` as a 3-task array
//! over a synthetic split, and `merge` folds the shards: every image is
//! scored exactly once, and the merged run is the single-machine run.
//!
//! The test starts its own `munged`, `slurmctld` and `slurmd` on a private
//! socket, private ports and a private `slurm.conf` (`SLURM_CONF`), and
//! stops exactly those processes, by pid.

mod common;

use common::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latent-he");
/// How long the cluster may take to come up, and the array to finish.
const START_LIMIT: Duration = Duration::from_secs(60);
const JOB_LIMIT: Duration = Duration::from_secs(600);

/// A daemon this test started, stopped (SIGTERM, then SIGKILL after 10 s)
/// by its pid when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    /// Starts `program` with `args` in the foreground (its own pid is the
    /// daemon's), output to `log`.
    fn start(name: &'static str, program: &str, args: &[&str], log: &Path, conf: &Path) -> Daemon {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("SLURM_CONF", conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        Daemon { name, child }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a signal to our own child's pid, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `ready` holds, at most `limit`; panics with `what` and the
/// logs otherwise.
fn wait_for(what: &str, limit: Duration, logs: &[PathBuf], mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| format!("{}:\n{}", l.display(), std::fs::read_to_string(l).unwrap_or_default()))
                .collect();
            panic!("{what} within {limit:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Two free TCP ports on this machine.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A one-node cluster in `dir`: munged, slurmctld, slurmd (dropped in
/// reverse order of start), and its `slurm.conf`.
struct Cluster {
    conf: PathBuf,
    logs: Vec<PathBuf>,
    // Dropped first to last: slurmd, slurmctld, munged.
    daemons: Vec<Daemon>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        while let Some(daemon) = self.daemons.pop() {
            drop(daemon);
        }
    }
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the Slurm test runs its daemons as root (as CI does)"
        );
        for program in [
            "/usr/sbin/munged",
            "/usr/sbin/slurmctld",
            "/usr/sbin/slurmd",
            "/usr/bin/sbatch",
        ] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's slurm-wlm and munge (.ci/run does)"
            );
        }
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let key = dir.join("munge.key");
        let bytes: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
        std::fs::write(&key, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let socket = dir.join("munge.sock");
        let conf = dir.join("slurm.conf");
        let path = |p: &Path| p.display().to_string();
        let log = |name: &str| dir.join("log").join(name);
        let mut daemons = Vec::new();
        let logs = vec![
            log("munged.out"),
            log("ctld.log"),
            log("d.log"),
            log("ctld.out"),
            log("d.out"),
        ];
        daemons.push(Daemon::start(
            "munged",
            "/usr/sbin/munged",
            &[
                "--foreground",
                "--force",
                &format!("--key-file={}", path(&key)),
                &format!("--socket={}", path(&socket)),
                &format!("--pid-file={}", path(&dir.join("munged.pid"))),
                &format!("--log-file={}", path(&log("munged.log"))),
                &format!("--seed-file={}", path(&dir.join("munged.seed"))),
            ],
            &logs[0],
            &conf,
        ));
        wait_for("munged's socket", START_LIMIT, &logs, || socket.exists());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().split('.').next().unwrap().to_string();
        let (ctld_port, d_port) = free_ports();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let text = format!(
            "ClusterName=latenthe\nSlurmctldHost={host}\nSlurmctldPort={ctld_port}\nSlurmdPort={d_port}\n\
             SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\nSlurmctldPidFile={dir}/slurmctld.pid\n\
             SlurmdPidFile={dir}/slurmd.pid\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core_Memory\nReturnToService=2\nSlurmctldLogFile={ctld_log}\n\
             SlurmdLogFile={d_log}\nNodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN\n\
             PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            socket = path(&socket),
            state = path(&dir.join("state")),
            spool = path(&dir.join("spool")),
            dir = path(dir),
            ctld_log = path(&logs[1]),
            d_log = path(&logs[2]),
        );
        std::fs::write(&conf, text).unwrap();
        let conf_arg = path(&conf);
        daemons.push(Daemon::start(
            "slurmctld",
            "/usr/sbin/slurmctld",
            &["-D", "-f", &conf_arg],
            &logs[3],
            &conf,
        ));
        daemons.push(Daemon::start(
            "slurmd",
            "/usr/sbin/slurmd",
            &["-D", "-f", &conf_arg],
            &logs[4],
            &conf,
        ));
        let cluster = Cluster { conf, logs, daemons };
        wait_for("an idle node", START_LIMIT, &cluster.logs, || {
            cluster
                .command("sinfo", &["-h", "-o", "%t"])
                .is_some_and(|out| out.trim() == "idle")
        });
        cluster
    }

    /// Runs a Slurm client command against this cluster; its stdout when
    /// it succeeds.
    fn command(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `results.csv`'s rows (header first) without the per-image seconds.
fn rows_without_seconds(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let keep: Vec<usize> = (0..rows[0].len())
        .filter(|&i| !rows[0][i].starts_with("seconds_"))
        .collect();
    rows.iter()
        .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
        .collect()
}

#[test]
fn a_slurm_job_array_scores_each_image_once_and_merges_into_the_single_machine_run() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    json(
        &Command::new(BIN)
            .args(["synth", "--n", "12", "--seed", "7", "--size", "64", "--json", "--out"])
            .arg(&data)
            .output()
            .unwrap(),
    );
    let split = data.join("train_val_list.txt");
    let names: Vec<String> = std::fs::read_to_string(&split)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = repo.join("models");
    let score_args = |out: &Path| -> Vec<String> {
        [
            "--dataset",
            "nih",
            "--root",
            &data.display().to_string(),
            "--split",
            &split.display().to_string(),
            "--model",
            &models.join("resnet20_f8.safetensors").display().to_string(),
            "--vqgan",
            &models.join("vqgan_f8.safetensors").display().to_string(),
            "--backend",
            "cpu",
            "--json",
            "--out",
            &out.display().to_string(),
        ]
        .map(str::to_string)
        .to_vec()
    };

    let cluster = Cluster::start(&dir.join("slurm"));
    let run = dir.join("run");
    let mut sbatch = vec![
        "--parsable".to_string(),
        "--array=0-2".into(),
        "--cpus-per-task=1".into(),
        "--mem=1000M".into(),
        format!("--output={}/task_%a.out", dir.display()),
        repo.join("deploy/slurm/score-array.sbatch").display().to_string(),
    ];
    sbatch.extend(score_args(&run));
    let submitted = Command::new("sbatch")
        .args(&sbatch)
        .env("SLURM_CONF", &cluster.conf)
        .env("LATENT_HE", BIN)
        .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let job = String::from_utf8(submitted.stdout).unwrap().trim().to_string();
    wait_for("the array to finish", JOB_LIMIT, &cluster.logs, || {
        cluster
            .command("squeue", &["-h", "-j", &job])
            .is_some_and(|out| out.trim().is_empty())
    });
    drop(cluster);
    let task_output = |i: usize| std::fs::read_to_string(dir.join(format!("task_{i}.out"))).unwrap_or_default();

    // each task scored its own shard: together, every image exactly once
    let mut scored = Vec::new();
    for i in 0..3 {
        let part = run.join(format!("shard-{i}-of-3"));
        let summary = part.join("summary.json");
        assert!(summary.exists(), "task {i} wrote no summary:\n{}", task_output(i));
        let rows = rows_without_seconds(&part.join("results.csv"));
        scored.extend(rows[1..].iter().map(|r| r[0].clone()));
    }
    assert_eq!(scored, names, "every image once, in the split's order");

    let merged = dir.join("merged");
    let mut merge = Command::new(BIN);
    merge.args(["merge", "--json", "--out"]).arg(&merged);
    for i in 0..3 {
        merge.arg(run.join(format!("shard-{i}-of-3")));
    }
    let summary = json(&merge.output().unwrap());
    assert_eq!(summary["images"], names.len(), "{summary}");
    assert_eq!(summary["missing"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(summary["duplicates"].as_array().unwrap().len(), 0, "{summary}");

    let single = dir.join("single");
    let whole = json(
        &Command::new(BIN)
            .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
            .arg("score")
            .args(score_args(&single))
            .output()
            .unwrap(),
    );
    assert_eq!(
        rows_without_seconds(&merged.join("results.csv")),
        rows_without_seconds(&single.join("results.csv")),
        "the same rows"
    );
    for metric in ["auroc", "f1"] {
        for average in ["micro", "macro", "weighted"] {
            let (a, b) = (&summary["plain"][metric][average], &whole["plain"][metric][average]);
            match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12, "{metric} {average}: {a} vs {b}"),
                _ => assert_eq!(a, b, "{metric} {average}"),
            }
        }
    }
    println!("the Slurm test took {:.1} s", started.elapsed().as_secs_f64());
}
