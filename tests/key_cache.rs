//! The key cache shared by the shards of one run: many processes (here
//! threads, each its own writer) generating the same model's keys into one
//! cache folder at once.

mod common;

use latent_he::ckks::KeyMemory;
use latent_he::nn::LoadOptions;
use latent_he::pipeline::keys::CachedKeys;
use latent_he::pipeline::{KeyDir, Planned};
use std::sync::{Arc, Barrier};

const SHARDS: usize = 10;

#[test]
fn ten_shards_generating_one_models_keys_at_once_share_one_valid_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // the only test in this binary: no other thread reads the variable
    std::env::set_var(latent_he::cache::CACHE_DIR_ENV, &cache);
    let (model, _) = common::small_resnet(dir.path(), 3);
    let planned = Arc::new(Planned::load(&model, &LoadOptions::default(), Some("insecure-n12-deep"), 1).unwrap());
    let start = Arc::new(Barrier::new(SHARDS));
    let shards: Vec<_> = (0..SHARDS)
        .map(|_| {
            let (model, planned, start) = (model.clone(), planned.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                CachedKeys::open(&model, &planned, KeyMemory::Compact)
            })
        })
        .collect();
    let opened: Vec<CachedKeys> = shards
        .into_iter()
        .map(|s| s.join().unwrap().expect("every shard gets keys"))
        .collect();
    assert!(
        opened.iter().any(|k| k.keygen_seconds.is_some()),
        "the cache was empty: someone generated"
    );
    // one folder, nothing left beside it
    let entries: Vec<String> = std::fs::read_dir(cache.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let folder = KeyDir::new(cache.join("keys").join(&entries[0]));
    let files: Vec<String> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    // a valid set: the public keys are the secret key's, for the plan
    let sk = folder.secret_key().unwrap();
    let pk = folder.public_keys(KeyMemory::Compact).unwrap();
    assert_eq!(pk.id(), sk.id());
    assert_eq!(pk.levels(), planned.plan.key_levels());
    // every shard ends with that set, and the next one loads it
    for keys in &opened {
        assert_eq!(keys.sk.id(), sk.id());
        assert_eq!(keys.dir, folder);
    }
    let again = CachedKeys::open(&model, &planned, KeyMemory::Compact).unwrap();
    assert_eq!((again.sk.id(), again.keygen_seconds), (sk.id(), None));
}
