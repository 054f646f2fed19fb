//! The models bundled in `models/`: each loads, has a model card that says
//! it was trained on synthetic data, and every classifier has the VQGAN of
//! its factor beside it, whose latents it reads.

mod common;

use latent_he::nn::{LoadOptions, Model};
use latent_he::vqgan::Vqgan;
use ndarray::Array4;
use rand::Rng;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// `resnet20_se_f8` -> `f8`: the factor suffix of a bundled file's stem.
fn factor(stem: &str) -> &str {
    stem.rsplit('_').next().unwrap()
}

fn card(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path.with_extension("json"))
        .unwrap_or_else(|e| panic!("{}: no model card: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_bundled_model_loads_with_its_card_and_the_vqgan_of_its_factor() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let (vqgans, classifiers): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|p| p.file_stem().unwrap().to_string_lossy().starts_with("vqgan_"));
    assert!(!vqgans.is_empty() && !classifiers.is_empty(), "{files:?}");
    let mut rng = common::rng();
    let image = Array4::from_shape_simple_fn((1, 3, 256, 256), || rng.gen_range(-1.0f32..1.0));
    let mut latents = std::collections::BTreeMap::new();
    for path in &vqgans {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let note = card(path)["data_note"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            note.contains("synthetic"),
            "{stem}: the card must say the data is synthetic"
        );
        let vqgan = Vqgan::load_cpu(path, None).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let z = vqgan.encode(image.clone()).unwrap();
        assert_eq!(
            [z.dim().1, z.dim().2, z.dim().3],
            vqgan.latent_shape(256, 256),
            "{stem}"
        );
        latents.insert(factor(&stem).to_string(), z.mapv(f64::from));
    }
    for path in &classifiers {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let card = card(path);
        assert_eq!(card["data"]["synthetic"], true, "{stem}");
        assert!(card["validation"]["auroc_macro"].as_f64().unwrap() > 0.5, "{stem}");
        let model = Model::load(path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let z = latents
            .get(factor(&stem))
            .unwrap_or_else(|| panic!("{stem}: no bundled VQGAN of factor {}", factor(&stem)));
        let logits = model
            .forward(z.view())
            .unwrap_or_else(|e| panic!("{stem} on its VQGAN's latents: {e}"));
        assert_eq!(logits.dim(), (1, card["classes"].as_array().unwrap().len()), "{stem}");
        assert!(logits.iter().all(|v| v.is_finite()), "{stem}");
    }
}
