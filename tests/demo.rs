//! `latent-he demo` on a fresh checkout: the bundled models, synthetic
//! images, the findings printed and the report written. The encrypted part of
//! the pipeline is exercised by `tests/score.rs` at a test preset; here the
//! demo runs in plaintext to stay fast.

mod common;

#[test]
fn demo_runs_on_the_bundled_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = common::latent_he(&[
        "demo",
        "--plaintext-only",
        "--n",
        "3",
        "--backend",
        "cpu",
        "--out",
        &out.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "stderr: {}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(stdout.matches("(synthetic; true labels:").count(), 3, "{stdout}");
    assert!(stdout.contains("seconds per image: VQGAN encode"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["images"], 3);
    assert!(out.join("report/roc.png").exists());

    let missing = common::refused(&common::latent_he(&[
        "demo",
        "--models",
        &dir.path().display().to_string(),
        "--out",
        &out.display().to_string(),
    ]));
    assert!(missing.contains("no bundled model"), "{missing}");
}
