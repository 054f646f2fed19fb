//! `nn` against PyTorch: logits of the fixtures in `tests/fixtures/nn`
//! (made by `make_fixtures.py` there: random weights, PyTorch float64
//! logits; every architecture at every latent by `make_formula_fixtures.py`:
//! weights from a formula rebuilt here, PyTorch float64 logits), tensor names
//! and shapes against PyTorch's state dicts, folding against the unfolded
//! model, and the loader's errors.

mod common;

use latent_he::nn::model::Layer;
use latent_he::nn::{
    expected_tensors, fold, random_state_dict, with_gain, Arch, InputClip, LatentShape, LoadOptions, Model, ModelSpec,
    NnError, StateDict, Tensor, WeightProblem,
};
use ndarray::{Array2, Array4, ArrayD, Ix2, Ix4};
use ndarray_npy::read_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// f64 path against PyTorch's float64 logits, both on the same rounded
/// weights (logits are of order 1): only summation order differs, observed
/// below 3e-15, so this is far tighter than the 1e-4 the issue asks for.
const TOL_F64: f64 = 1e-9;
/// f32 path (weights and activations in f32) against PyTorch's float64
/// logits; observed up to 4e-6.
const TOL_F32: f64 = 1e-4;

/// Models at f=8 with their own safetensors file.
const F8_FIXTURES: [&str; 8] = [
    "resnet20_f8",
    "resnet20_se_f8",
    "lenet5_f8",
    "lenet5_se_f8",
    "vgg5_f8",
    "vgg5_se_f8",
    "hefnet_f8",
    "hefnet_se_f8",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nn")
        .join(name)
}

fn input(name: &str) -> Array4<f32> {
    let x: ArrayD<f32> = read_npy(fixture(&format!("{name}.input.npy"))).expect("input fixture");
    x.into_dimensionality::<Ix4>().expect("B x C x H x W")
}

fn logits(name: &str) -> Array2<f64> {
    let y: ArrayD<f64> = read_npy(fixture(&format!("{name}.logits.npy"))).expect("logits fixture");
    y.into_dimensionality::<Ix2>().expect("B x classes")
}

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The model a fixture holds, for the ResNet20 latents merged from resnet20_f8.
fn load_fixture(name: &str) -> Model<f64> {
    if let Some(f) = name.strip_prefix("resnet20_f").filter(|f| *f != "8") {
        let mut dict = StateDict::read(&fixture("resnet20_f8.safetensors")).expect("base");
        let delta = StateDict::read(&fixture(&format!("resnet20_f{f}.conv1.safetensors"))).expect("delta");
        let conv1 = delta.get("conv1.weight").expect("conv1").clone();
        dict.insert("conv1.weight", conv1);
        // The latent now follows from conv1's input channels.
        dict.remove_metadata("latent");
        return Model::from_state_dict(&dict, &LoadOptions::default()).expect("merged model loads");
    }
    Model::load(&fixture(&format!("{name}.safetensors")), &LoadOptions::default()).expect("fixture loads")
}

fn all_fixtures() -> Vec<&'static str> {
    let mut names = F8_FIXTURES.to_vec();
    names.extend(["resnet20_f2", "resnet20_f4", "resnet20_f16"]);
    names
}

/// `model` on the fixture input `x32` against PyTorch's float64 logits `want`:
/// f64 (within `TOL_F64`), f32 (within `tol32`), folded f64 against unfolded,
/// folded f32 (within `tol32`). Returns the f64 error.
fn check_against_pytorch(name: &str, model: &Model<f64>, x32: &Array4<f32>, want: &Array2<f64>, tol32: f64) -> f64 {
    let x64 = x32.mapv(f64::from);
    let got64 = model
        .forward(x64.view())
        .unwrap_or_else(|e| panic!("{name}: f64 forward: {e}"));
    let e64 = max_abs_diff(&got64, want);
    assert!(e64 < TOL_F64, "{name}: f64 differs from PyTorch by {e64:e}");

    let got32 = model
        .cast::<f32>()
        .forward(x32.view())
        .unwrap_or_else(|e| panic!("{name}: f32 forward: {e}"))
        .mapv(f64::from);
    let e32 = max_abs_diff(&got32, want);
    assert!(e32 < tol32, "{name}: f32 differs from PyTorch by {e32:e}");

    let folded = fold(model);
    let gotf = folded
        .forward(x64.view())
        .unwrap_or_else(|e| panic!("{name}: folded forward: {e}"));
    let ef = max_abs_diff(&gotf, &got64);
    assert!(ef < 1e-9, "{name}: folded differs from unfolded by {ef:e}");
    let ef32 = max_abs_diff(
        &folded
            .cast::<f32>()
            .forward(x32.view())
            .unwrap_or_else(|e| panic!("{name}: folded f32 forward: {e}"))
            .mapv(f64::from),
        want,
    );
    assert!(ef32 < tol32, "{name}: folded f32 differs from PyTorch by {ef32:e}");
    // Step 5: the gained model's logits are exactly 16 times the folded ones.
    let gained = with_gain(&folded, 16.0).unwrap_or_else(|| panic!("{name}: with_gain refused a folded model"));
    let eg = max_abs_diff(&gained.forward(x64.view()).unwrap().mapv(|v| v / 16.0), &gotf);
    assert!(
        eg < 1e-9,
        "{name}: the gained model differs from 16x the folded one by {eg:e}"
    );
    assert!(
        with_gain(model, 16.0).is_none(),
        "{name}: with_gain took an unfolded model"
    );
    eprintln!("{name}: f64 {e64:.1e}, f32 {e32:.1e}, folded-unfolded {ef:.1e}, folded f32 {ef32:.1e}, gained {eg:.1e}");
    e64
}

#[test]
fn logits_match_pytorch_f64_f32_and_folded() {
    for name in all_fixtures() {
        check_against_pytorch(name, &load_fixture(name), &input(name), &logits(name), TOL_F32);
    }
}

/// `s(j)` of `make_formula_fixtures.py` for `j < n`: uniform in [-1, 1),
/// exact doubles from the name's FNV-1a 64 hash and splitmix64's finalizer.
fn formula_uniform(name: &str, n: usize) -> Vec<f64> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (1..=n as u64)
        .map(|j| {
            let mut z = seed.wrapping_add(j.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // f64::EPSILON is 2^-52: (z >> 11) < 2^53, so both steps are exact.
            (z >> 11) as f64 * f64::EPSILON - 1.0
        })
        .collect()
}

/// Every tensor of `spec` by the formula of `make_formula_fixtures.py` (see
/// its docstring): values depend only on the tensor's name and shape.
fn formula_dict(spec: &ModelSpec) -> StateDict {
    let tensors = expected_tensors(spec).unwrap();
    let names: std::collections::BTreeSet<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let mut dict = StateDict::new();
    for t in &tensors {
        let n: usize = t.shape.iter().product();
        let (module, p) = t.name.rsplit_once('.').expect("dotted name");
        // VGG5's and HefNet's relu1..relu4 are one module: every copy is relu1's.
        let hashed = match (spec.arch(), module) {
            (Arch::Vgg5 | Arch::HefNet, "relu2" | "relu3" | "relu4") => format!("relu1.{p}"),
            _ => t.name.clone(),
        };
        let s = formula_uniform(&hashed, n);
        let map = |f: &dyn Fn(f64) -> f64| s.iter().map(|&v| f(v)).collect::<Vec<f64>>();
        let data = if names.contains(format!("{module}.running_var").as_str()) {
            match p {
                "weight" => map(&|v| 0.8 + 0.2 * v),
                "running_var" => map(&|v| 1.0 + 0.2 * v.abs()),
                "num_batches_tracked" => vec![7.0; n],
                _ => map(&|v| 0.2 * v), // bias, running_mean
            }
        } else if module.ends_with("sigmoid") {
            match p {
                "alpha" => map(&|v| -(0.002 + 0.008 * v.abs())),
                "beta" => map(&|v| 0.1 + 0.1 * v.abs()),
                "c" => map(&|v| 0.4 + 0.2 * v.abs()),
                _ => panic!("no formula for {}", t.name),
            }
        } else {
            match p {
                "alpha" => map(&|v| 0.05 + 0.05 * v.abs()),
                "beta" => map(&|v| 0.6 + 0.3 * v.abs()),
                "c" => map(&|v| 0.05 * v),
                "weight" => {
                    let fan_in: usize = t.shape[1..].iter().product();
                    map(&|v| 1.5 * v / (fan_in as f64).sqrt())
                }
                "bias" => map(&|v| 0.1 * v),
                _ => panic!("no formula for {}", t.name),
            }
        };
        dict.insert(t.name.clone(), Tensor::new(t.shape.clone(), data).unwrap());
    }
    dict
}

/// Latent factors of the formula fixtures: f=2 (2x128x128), f=4 (3x64x64),
/// f=8 (4x32x32), f=16 (8x16x16).
const FORMULA_FACTORS: [usize; 4] = [2, 4, 8, 16];

/// f32 bound for the formula fixtures, tighter than `TOL_F32`: LeNet5's, VGG5's
/// and HefNet's formula logits are only 0.03 to 0.4 in size, and scaling their
/// first convolution by 1.01 moves them by as little as 2.4e-4; observed f32
/// errors (folded or not) are at most 1.5e-6.
const TOL_F32_FORMULA: f64 = 1e-5;

/// Every architecture with and without SE at every latent, against PyTorch,
/// without weight files: weights from a formula both sides compute bit for bit
/// (`make_formula_fixtures.py`), one shared input per latent (batch 1; 2 at
/// f=8), PyTorch's float64 logits. The dict goes through safetensors bytes and
/// the loader infers the spec. PyTorch cannot run LeNet5 at f=16 (conv3's 5x5
/// kernel on a 1x1 map): the script writes no logits for it and we refuse it,
/// naming conv3. Observed errors: f64 at most 1.3e-15, f32 (folded or not)
/// at most 1.5e-6. About 4 s in release on 2 cores (the slowest, ResNet56+SE
/// at f=2, 0.5 s).
#[test]
fn every_architecture_at_every_latent_matches_pytorch_with_formula_weights() {
    let mut checked = 0;
    for factor in FORMULA_FACTORS {
        let latent = LatentShape::for_factor(factor).unwrap();
        let x32 = input(&format!("formula_f{factor}"));
        let (_, c, h, w) = x32.dim();
        assert_eq!(
            (c, h, w),
            (latent.channels(), latent.height(), latent.width()),
            "formula_f{factor} input"
        );
        for arch in Arch::ALL {
            for se in [false, true] {
                let name = format!("formula_{arch}{}_f{factor}", if se { "_se" } else { "" });
                let spec = ModelSpec::with_class_count(arch, se, 14, latent).unwrap();
                if arch == Arch::LeNet5 && factor == 16 {
                    let err = expected_tensors(&spec).expect_err(&name);
                    assert!(
                        matches!(err, NnError::Architecture { .. }) && err.to_string().contains("conv3"),
                        "{name}: {err}"
                    );
                    assert!(!fixture(&format!("{name}.logits.npy")).exists(), "{name}");
                    continue;
                }
                let bytes = formula_dict(&spec)
                    .to_safetensors(latent_he::nn::StoreDtype::F64)
                    .unwrap();
                let dict = StateDict::from_safetensors(&bytes).unwrap();
                let model = Model::from_state_dict(&dict, &LoadOptions::default())
                    .unwrap_or_else(|e| panic!("{name}: formula dict does not load: {e}"));
                assert_eq!(model.spec(), &spec, "{name}");
                let want = logits(&name);
                assert_eq!(want.dim(), (x32.dim().0, 14), "{name} logits");
                check_against_pytorch(&name, &model, &x32, &want, TOL_F32_FORMULA);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 54);
}

#[test]
fn specs_come_from_metadata_or_tensors() {
    let m = load_fixture("resnet20_f8");
    assert_eq!(m.spec().arch(), Arch::ResNet20);
    assert!(!m.spec().se());
    assert_eq!(m.spec().classes().len(), 15);
    assert_eq!(m.spec().classes()[1], "Cardiomegaly");
    assert_eq!(m.spec().latent(), LatentShape::for_factor(8).unwrap());
    assert_eq!(load_fixture("vgg5_f8").spec().classes()[13], "Support Devices");
    // hefnet_f8 has no metadata: everything is inferred.
    let h = load_fixture("hefnet_f8");
    assert_eq!(h.spec().arch(), Arch::HefNet);
    assert!(!h.spec().se());
    assert_eq!(h.spec().classes(), ["class_0", "class_1", "class_2"]);
    assert!(load_fixture("hefnet_se_f8").spec().se());
    assert_eq!(load_fixture("resnet20_f2").spec().latent().to_string(), "2x128x128");
    assert_eq!(load_fixture("resnet20_f16").spec().latent().to_string(), "8x16x16");
}

#[test]
fn batch_equals_single_images() {
    let model = load_fixture("lenet5_se_f8");
    let x = input("lenet5_se_f8").mapv(f64::from);
    let batch = model.forward(x.view()).unwrap();
    for b in 0..x.dim().0 {
        let one = model.forward_one(x.index_axis(ndarray::Axis(0), b)).unwrap();
        for (u, v) in one.iter().zip(batch.row(b)) {
            assert_eq!(u, v);
        }
    }
}

/// The largest magnitude per image of `x` and of every tensor `layers` make
/// from it, walked here layer by layer (into residual branches and SE
/// gates) with each layer's own forward pass.
fn peaks_by_walking(layers: &[Layer<f64>], mut x: Array4<f64>, peaks: &mut [f64]) -> Array4<f64> {
    let see = |t: &Array4<f64>, peaks: &mut [f64]| {
        for (p, image) in peaks.iter_mut().zip(t.outer_iter()) {
            *p = image.iter().fold(*p, |m, v| m.max(v.abs()));
        }
    };
    see(&x, peaks);
    for layer in layers {
        match layer {
            Layer::Residual { body, shortcut } => {
                peaks_by_walking(body, x.clone(), peaks);
                peaks_by_walking(shortcut, x.clone(), peaks);
            }
            Layer::Se { gate, .. } => {
                peaks_by_walking(gate, x.clone(), peaks);
            }
            _ => {}
        }
        x = layer.forward(x);
        see(&x, peaks);
    }
    x
}

#[test]
fn peaks_are_the_largest_value_of_each_image_anywhere_in_the_pass() {
    let seed = common::seed();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for name in ["resnet20_se_f8", "lenet5_se_f8"] {
        let model = fold(&load_fixture(name));
        let mut x = random_input(model.spec().latent(), 3, rng.gen());
        // One image far outside the others' range: each peak is its own.
        x.index_axis_mut(ndarray::Axis(0), 1).mapv_inplace(|v| v * 2.0);
        let (logits, peaks) = model.forward_with_peaks(x.view()).unwrap();
        assert_eq!(
            logits,
            model.forward(x.view()).unwrap(),
            "{name}: the logits are forward's"
        );
        let mut want = vec![0.0; 3];
        peaks_by_walking(model.layers(), x.clone(), &mut want);
        assert_eq!(peaks.to_vec(), want, "{name}");
        for b in 0..3 {
            let (_, alone) = model
                .forward_with_peaks(x.slice(ndarray::s![b..b + 1, .., .., ..]))
                .unwrap();
            assert_eq!(alone[0], peaks[b], "{name}: image {b} alone");
        }
        // The doubled image's peak is at least its own input's, and the
        // three peaks are not one batch-wide value.
        let input_peak = x.index_axis(ndarray::Axis(0), 1).fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(peaks[1] >= input_peak, "{name}: {peaks} against input {input_peak}");
        assert!(
            peaks[0] != peaks[1] || peaks[1] != peaks[2],
            "{name}: one value for all: {peaks}"
        );
        // Values past f64's range give an infinite peak, not a finite one.
        x.index_axis_mut(ndarray::Axis(0), 2).mapv_inplace(|v| v * 1e200);
        let (_, peaks) = model.forward_with_peaks(x.view()).unwrap();
        assert_eq!(peaks[2], f64::INFINITY, "{name}: {peaks}");
    }
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    arch: String,
    se: bool,
    latent: String,
    classes: usize,
    tensors: Option<BTreeMap<String, Vec<usize>>>,
    error: Option<String>,
}

/// Our tensor list equals PyTorch's state dict for every architecture, with
/// and without SE, at every latent; where PyTorch cannot run, we refuse too.
#[test]
fn tensor_names_and_shapes_match_pytorch_state_dicts() {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest");
    let entries: Vec<ManifestEntry> = serde_json::from_str(&text).expect("manifest JSON");
    assert!(entries.len() >= 40);
    for e in entries {
        let spec =
            ModelSpec::with_class_count(e.arch.parse().unwrap(), e.se, e.classes, e.latent.parse().unwrap()).unwrap();
        match (expected_tensors(&spec), e.tensors, e.error) {
            (Ok(ours), Some(theirs), None) => {
                let ours: BTreeMap<String, Vec<usize>> = ours.into_iter().map(|t| (t.name, t.shape)).collect();
                assert_eq!(ours, theirs, "{spec}");
            }
            (Err(NnError::Architecture { .. }), None, Some(_)) => {}
            (ours, _, err) => panic!("{spec}: ours {ours:?}, PyTorch error {err:?}"),
        }
    }
}

fn random_input(latent: LatentShape, batch: usize, seed: u64) -> Array4<f64> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn((batch, latent.channels(), latent.height(), latent.width()), || {
        rng.gen_range(-1.0..1.0)
    })
}

fn check_fold_invariants(layers: &[Layer<f64>]) {
    for (i, l) in layers.iter().enumerate() {
        match l {
            Layer::BatchNorm(b) => panic!("{} left after folding", b.name()),
            Layer::GlobalAvgPool => panic!("global pool left after folding"),
            Layer::Act(a) if i > 0 && matches!(layers[i - 1], Layer::Conv(_) | Layer::Linear(_)) => {
                let lead = a.coeffs()[a.degree()];
                assert!(lead == 1.0 || lead == -1.0, "{}: leading coefficient {lead}", a.name());
            }
            Layer::AvgPool(p) if matches!(layers.get(i + 1), Some(Layer::Conv(_))) => {
                assert_eq!(p.scale(), 1.0)
            }
            Layer::AvgPool(_) if matches!(layers.get(i + 1), Some(Layer::Linear(_))) => {
                panic!("pool before a linear layer left after folding")
            }
            Layer::Residual { body, shortcut } => {
                check_fold_invariants(body);
                check_fold_invariants(shortcut);
            }
            Layer::Se { gate, .. } => check_fold_invariants(gate),
            _ => {}
        }
    }
}

/// Folding is exact for every architecture, with and without SE (random weights).
#[test]
fn folded_equals_unfolded_for_every_architecture() {
    for (k, arch) in Arch::ALL.into_iter().enumerate() {
        for se in [false, true] {
            let factors: &[usize] = if arch == Arch::ResNet20 { &[2, 4, 8, 16] } else { &[8] };
            for &f in factors {
                let spec = ModelSpec::with_class_count(arch, se, 6, LatentShape::for_factor(f).unwrap()).unwrap();
                let dict = random_state_dict(&spec, 100 + k as u64).unwrap();
                let model = Model::from_state_dict_with_spec(&dict, spec.clone()).expect("random dict loads");
                let folded = fold(&model);
                assert!(folded.is_folded() && !model.is_folded());
                check_fold_invariants(folded.layers());
                let x = random_input(spec.latent(), 2, 7);
                let a = model.forward(x.view()).unwrap();
                let b = folded.forward(x.view()).unwrap();
                let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let err = max_abs_diff(&a, &b);
                assert!(
                    err <= 1e-10 * scale,
                    "{spec}: folded differs by {err:e} (logits up to {scale:e})"
                );
                let again = fold(&folded).forward(x.view()).unwrap();
                assert!(
                    max_abs_diff(&again, &b) <= 1e-10 * scale,
                    "{spec}: folding twice changed the model"
                );
            }
        }
    }
}

fn resnet20_dict() -> StateDict {
    StateDict::read(&fixture("resnet20_f8.safetensors")).unwrap()
}

#[test]
fn loader_names_every_missing_extra_and_misshaped_tensor() {
    let mut dict = resnet20_dict();
    dict.remove("layer2.0.shortcut.1.running_var");
    dict.remove("relu.alpha");
    dict.insert("layer9.0.conv1.weight", Tensor::new(vec![2], vec![0.0, 1.0]).unwrap());
    dict.insert("linear.weight", Tensor::new(vec![14, 64], vec![0.0; 14 * 64]).unwrap());
    let mut nan = dict.get("layer1.1.bn2.weight").unwrap().clone();
    nan.data_mut()[3] = f64::NAN;
    dict.insert("layer1.1.bn2.weight", nan);
    let err = Model::from_state_dict(&dict, &LoadOptions::default()).unwrap_err();
    let NnError::Weights { problems, .. } = &err else {
        panic!("{err}")
    };
    let names: Vec<&str> = problems.iter().map(WeightProblem::name).collect();
    for want in [
        "layer2.0.shortcut.1.running_var",
        "relu.alpha",
        "layer9.0.conv1.weight",
        "linear.weight",
        "layer1.1.bn2.weight",
    ] {
        assert!(names.contains(&want), "{want} not reported in {err}");
    }
    assert_eq!(problems.len(), 5, "{err}");
    assert!(problems.contains(&WeightProblem::Shape {
        name: "linear.weight".into(),
        expected: vec![15, 64],
        found: vec![14, 64]
    }));
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains("missing relu.alpha [1]") && msg.contains("extra layer9.0.conv1.weight [2]"),
        "{msg}"
    );
}

#[test]
fn an_input_clip_in_the_metadata_clamps_the_inputs_of_every_forward_pass() {
    let mut dict = resnet20_dict();
    let plain = Model::from_state_dict(&dict, &LoadOptions::default()).unwrap();
    assert_eq!(plain.spec().input_clip(), None);
    dict.set_metadata("input_clip", "1.5");
    let clipped = Model::from_state_dict(&dict, &LoadOptions::default()).unwrap();
    let clip = clipped.spec().input_clip().expect("read from the metadata");
    assert_eq!(clip.bound(), 1.5);
    assert!(clipped.spec().metadata().contains(&("input_clip".into(), "1.5".into())));

    // Fresh latents with a third of their values beyond the bound.
    let mut rng = common::rng();
    let x = Array4::<f64>::from_shape_simple_fn((2, 4, 32, 32), || rng.gen_range(-3.0..3.0));
    let clamped = x.mapv(|v| v.clamp(-1.5, 1.5));
    let by_hand = plain.forward(clamped.view()).unwrap();
    assert!(max_abs_diff(&clipped.forward(x.view()).unwrap(), &by_hand) < 1e-12);
    assert!(
        max_abs_diff(&plain.forward(x.view()).unwrap(), &by_hand) > 1e-3,
        "the clamp made no difference: the test would not see it missing"
    );
    // Folding keeps the clamp.
    assert!(max_abs_diff(&fold(&clipped).forward(x.view()).unwrap(), &by_hand) < 1e-9);
    // Non-finite inputs are refused, not clamped away.
    let mut inf = x.clone();
    inf[[0, 0, 0, 0]] = f64::INFINITY;
    assert!(matches!(clipped.forward(inf.view()), Err(NnError::NonFinite { .. })));

    // An option agreeing with the metadata is fine; one that does not is a conflict.
    let same = LoadOptions {
        input_clip: Some(InputClip::new(1.5).unwrap()),
        ..Default::default()
    };
    assert!(Model::from_state_dict(&dict, &same).is_ok());
    let other = LoadOptions {
        input_clip: Some(InputClip::new(2.0).unwrap()),
        ..Default::default()
    };
    let err = Model::from_state_dict(&dict, &other).unwrap_err();
    assert!(matches!(err, NnError::Conflict { what: "input_clip", .. }), "{err}");
    for bad in ["0", "-2", "nan", "inf", "eight"] {
        dict.set_metadata("input_clip", bad);
        let err = Model::from_state_dict(&dict, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, NnError::Parse { what: "input_clip", .. }), "{bad}: {err}");
    }
}

#[test]
fn loader_settings_conflicts_and_inference() {
    let dict = resnet20_dict();
    let conflict = LoadOptions {
        arch: Some(Arch::Vgg5),
        ..Default::default()
    };
    let err = Model::from_state_dict(&dict, &conflict).unwrap_err();
    assert!(matches!(err, NnError::Conflict { what: "arch", .. }), "{err}");
    let same = LoadOptions {
        arch: Some(Arch::ResNet20),
        se: Some(false),
        ..Default::default()
    };
    assert!(Model::from_state_dict(&dict, &same).is_ok());

    // Without metadata the options decide; a wrong architecture lists the tensors.
    let mut bare = dict.clone();
    for k in ["arch", "se", "classes", "latent"] {
        bare.remove_metadata(k);
    }
    let m = Model::from_state_dict(&bare, &LoadOptions::default()).unwrap();
    assert_eq!(m.spec().arch(), Arch::ResNet20);
    assert_eq!(m.spec().classes()[0], "class_0");
    let wrong = LoadOptions {
        arch: Some(Arch::ResNet32),
        ..Default::default()
    };
    let err = Model::from_state_dict(&bare, &wrong).unwrap_err();
    assert!(err.to_string().contains("missing layer1.3.conv1.weight"), "{err}");
    let five = LoadOptions {
        classes: Some(vec!["x".into(); 1]),
        ..Default::default()
    };
    let err = Model::from_state_dict(&bare, &five).unwrap_err();
    assert!(
        err.to_string()
            .contains("linear.weight has shape [15, 64], expected [1, 64]"),
        "{err}"
    );
    let mut bad_meta = dict.clone();
    bad_meta.set_metadata("latent", "4x32");
    assert!(matches!(
        Model::from_state_dict(&bad_meta, &LoadOptions::default()),
        Err(NnError::Parse { .. })
    ));

    // An architecture that cannot run on the latent says which layer fails.
    let spec = ModelSpec::with_class_count(Arch::LeNet5, false, 3, LatentShape::for_factor(16).unwrap()).unwrap();
    let err = expected_tensors(&spec).unwrap_err();
    assert!(err.to_string().contains("conv3"), "{err}");
}

#[test]
fn shared_activation_copies() {
    let path = fixture("vgg5_f8.safetensors");
    let full = StateDict::read(&path).unwrap();
    let x = input("vgg5_f8").mapv(f64::from);
    let want = Model::from_state_dict(&full, &LoadOptions::default())
        .unwrap()
        .forward(x.view())
        .unwrap();
    // safetensors' save_model keeps one name of tensors that share memory.
    let mut one = full.clone();
    for n in ["relu1", "relu2", "relu4"] {
        for p in ["alpha", "beta", "c"] {
            one.remove(&format!("{n}.{p}"));
        }
    }
    let got = Model::from_state_dict(&one, &LoadOptions::default())
        .unwrap()
        .forward(x.view())
        .unwrap();
    assert_eq!(got, want);
    let mut differ = full.clone();
    differ.get_mut("relu3.beta").unwrap().data_mut()[0] += 0.5;
    let err = Model::from_state_dict(&differ, &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("relu3.beta") && err.to_string().contains("share"),
        "{err}"
    );
    let mut none = one.clone();
    for p in ["alpha", "beta", "c"] {
        none.remove(&format!("relu3.{p}"));
    }
    let err = Model::from_state_dict(&none, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing relu1.alpha"), "{err}");
}

#[test]
fn bad_files_and_inputs_are_refused() {
    let bytes = std::fs::read(fixture("vgg5_se_f8.safetensors")).unwrap();
    let err = StateDict::from_safetensors(&bytes[..bytes.len() - 10]).unwrap_err();
    assert!(matches!(err, NnError::Safetensors { .. }), "{err}");
    assert!(matches!(
        StateDict::from_safetensors(b"nonsense"),
        Err(NnError::Safetensors { .. })
    ));
    let err = StateDict::read(&fixture("absent.safetensors")).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }) && err.to_string().contains("absent.safetensors"));

    let model = load_fixture("vgg5_se_f8");
    let wrong = Array4::<f64>::zeros((1, 3, 32, 32));
    assert!(matches!(model.forward(wrong.view()), Err(NnError::InputShape { .. })));
    let empty = Array4::<f64>::zeros((0, 4, 32, 32));
    assert!(matches!(model.forward(empty.view()), Err(NnError::InputShape { .. })));
    let mut nan = Array4::<f64>::zeros((1, 4, 32, 32));
    nan[[0, 1, 2, 3]] = f64::NAN;
    let err = model.forward(nan.view()).unwrap_err();
    assert!(
        matches!(err, NnError::NonFinite { index, .. } if index == 32 * 32 + 2 * 32 + 3),
        "{err}"
    );
}

#[test]
fn round_trip_through_safetensors_keeps_the_model() {
    let model = load_fixture("hefnet_se_f8");
    let dict = StateDict::read(&fixture("hefnet_se_f8.safetensors")).unwrap();
    let bytes = dict.to_safetensors(latent_he::nn::StoreDtype::F64).unwrap();
    let again = Model::from_state_dict(&StateDict::from_safetensors(&bytes).unwrap(), &LoadOptions::default()).unwrap();
    let x = input("hefnet_se_f8").mapv(f64::from);
    assert_eq!(model.forward(x.view()).unwrap(), again.forward(x.view()).unwrap());
    assert_eq!(again.spec(), model.spec());
}
