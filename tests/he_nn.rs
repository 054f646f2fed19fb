//! Encrypted layers and whole models against plain f64 (the `nn` forward
//! pass, itself checked against PyTorch), on both backends: GPU and CPU
//! ciphertexts must be identical.

mod common;

use latent_he::backend::gpu::GpuContext;
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{decrypt, DecryptionNoise, EvalBackend, Evaluator, KeyMemory, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::{
    decrypt_batches, decrypt_tensor, encrypt_tensor, HeConv, HeConvError, Plan, PolyActivation, SlotLayout,
    NETWORK_GAIN,
};
use latent_he::nn::layers::{Conv2d, ConvGeometry};
use latent_he::nn::{fold, random_folded_model, Arch, LatentShape, Model, ModelSpec};
use ndarray::{Array1, Array4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

fn gpu() -> Arc<GpuContext> {
    GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"))
}

/// Runs `f` on the GPU on the uploaded `cts` and checks the downloaded
/// result equals `cpu_out` word for word.
fn same_on_gpu(
    ctx: &Arc<GpuContext>,
    keys: &PublicKeySet,
    cts: &[latent_he::ckks::Ciphertext],
    cpu_out: &[latent_he::ckks::Ciphertext],
    f: impl Fn(&GpuEvaluator, &[latent_he::ckks::gpu_eval::GpuCiphertext]) -> Vec<latent_he::ckks::gpu_eval::GpuCiphertext>,
) {
    let ev = GpuEvaluator::new(ctx, keys).unwrap();
    let up: Vec<_> = cts.iter().map(|c| ev.upload(c).unwrap()).collect();
    let on_gpu: Vec<_> = f(&ev, &up).iter().map(|c| ev.download(c).unwrap()).collect();
    assert_eq!(on_gpu, cpu_out, "GPU and CPU ciphertexts differ");
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// One convolution through `HeConv` against `nn::layers::Conv2d`, inputs laid
/// out with `input_stride` (a gap left by an earlier strided layer).
fn conv_case(g: ConvGeometry, (h, w): (usize, usize), input_stride: usize, gpu: Option<&Arc<GpuContext>>) {
    let params = Params::preset("insecure-n12").unwrap();
    let mut rng = common::rng();
    let k = g.kernel;
    let cin_g = g.in_channels / g.groups;
    let weight: Vec<f64> = (0..g.out_channels * cin_g * k * k)
        .map(|_| rng.gen_range(-0.5..0.5))
        .collect();
    let bias: Vec<f64> = (0..g.out_channels).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let full = SlotLayout::input(g.in_channels, h * input_stride, w * input_stride, params.slots()).unwrap();
    let layout = full.strided(g.in_channels, h, w, input_stride);
    let conv = HeConv::new("conv", g, weight.clone(), Some(bias.clone()), layout).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &conv.rotations()));
    let x: Vec<f64> = (0..layout.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let level = params.max_level();
    let cts = encrypt_tensor(&keys, &params, &layout, &x, level).unwrap();
    let cpu = Evaluator::new(keys.clone());
    let out = conv.apply(&cpu, &params, &cts).unwrap();
    assert!(out
        .iter()
        .all(|c| c.level() == level - 1 && c.scale() == params.scale(level - 1)));
    let reference = Conv2d::new(
        "conv",
        g,
        Array4::from_shape_vec((g.out_channels, cin_g, k, k), weight).unwrap(),
        Some(Array1::from(bias)),
    )
    .unwrap();
    let model_input = Array4::from_shape_vec((1, g.in_channels, h, w), x).unwrap();
    let want: Vec<f64> = reference.forward(&model_input).iter().copied().collect();
    let got = decrypt_tensor(&sk, &conv.output(), &out, DecryptionNoise::none()).unwrap();
    let err = max_abs_diff(&got, &want);
    assert!(err < 1e-3, "{g:?} on {h}x{w} (gap {input_stride}): max error {err}");
    // Gaps, padding channels and replicas hold zero or the right copy.
    let slots: Vec<Vec<f64>> = out.iter().map(|c| decrypt(&sk, c).unwrap()).collect();
    let clean = conv.output().pack(&got);
    let stray = slots
        .iter()
        .flatten()
        .zip(clean.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(stray < 1e-3, "{g:?}: a slot outside the tensor holds {stray}");
    // The same input with its rescale pending (a product by 1 not yet
    // rescaled): two levels down, the same values at the same scale.
    let pending: Vec<_> = cts
        .iter()
        .map(|c| EvalBackend::mul_const(&cpu, c, 1.0).unwrap())
        .collect();
    let from_pending = conv.apply_pending(&cpu, &params, &pending).unwrap();
    assert!(from_pending
        .iter()
        .all(|c| c.level() == level - 2 && c.scale() == params.scale(level - 2)));
    let err = max_abs_diff(
        &decrypt_tensor(&sk, &conv.output(), &from_pending, DecryptionNoise::none()).unwrap(),
        &want,
    );
    assert!(err < 1e-3, "{g:?} on a pending input: max error {err}");
    if let Some(ctx) = gpu {
        same_on_gpu(ctx, &keys, &cts, &out, |ev, up| conv.apply(ev, &params, up).unwrap());
    }
}

fn geometry(cin: usize, cout: usize, kernel: usize, stride: usize, padding: usize, groups: usize) -> ConvGeometry {
    ConvGeometry {
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride,
        padding,
        groups,
    }
}

#[test]
fn convolutions_of_every_shape_match_plaintext_and_the_gpu() {
    let ctx = gpu();
    // 3x3 same padding, replicated input (4 channels in 2048 slots).
    conv_case(geometry(4, 4, 3, 1, 1, 1), (8, 8), 1, Some(&ctx));
    // Stride 2 with a channel change: output at gap 2.
    conv_case(geometry(4, 8, 3, 2, 1, 1), (8, 8), 1, Some(&ctx));
    // Input already at gap 2, several output ciphertexts (16 x 64-slot blocks... x2).
    conv_case(geometry(8, 40, 3, 1, 1, 1), (4, 4), 2, Some(&ctx));
    // 5x5 without padding, grouped, channel count not a power of two.
    conv_case(geometry(3, 6, 5, 1, 0, 3), (9, 7), 1, None);
    // 1x1 shortcut with stride 2.
    conv_case(geometry(6, 12, 1, 2, 0, 1), (8, 8), 1, None);
    // Several input ciphertexts.
    conv_case(geometry(48, 8, 3, 1, 1, 4), (4, 4), 2, None);
}

#[test]
fn bad_shapes_are_refused() {
    let layout = SlotLayout::input(4, 8, 8, 2048).unwrap();
    assert!(matches!(
        HeConv::new("c", geometry(3, 4, 3, 1, 1, 1), vec![0.1; 108], None, layout),
        Err(HeConvError::Channels {
            expected: 3,
            found: 4,
            ..
        })
    ));
    assert!(matches!(
        HeConv::new("c", geometry(4, 4, 3, 1, 1, 1), vec![0.1; 5], None, layout),
        Err(HeConvError::Shape { what: "weights", .. })
    ));
    assert!(matches!(
        HeConv::new("c", geometry(4, 4, 11, 1, 0, 1), vec![0.1; 4 * 4 * 121], None, layout),
        Err(HeConvError::Geometry { .. })
    ));
    assert!(SlotLayout::input(1, 64, 64, 2048).is_err());
    let conv = HeConv::new("c", geometry(4, 4, 3, 1, 1, 1), vec![0.1; 144], None, layout).unwrap();
    // 8 baby steps, 3 giant steps (4 channels repeat every 4 blocks).
    assert_eq!(conv.key_switches(), 8 + 3);
    assert_eq!(conv.rotations(), vec![-9, -8, -7, -1, 1, 7, 8, 9, 64, 128, 192]);
    assert!(PolyActivation::new("a", vec![0.1, 0.2, 0.0]).is_none());
    assert!(PolyActivation::new("a", vec![0.1, 0.2]).is_none());
}

#[test]
fn activations_in_every_form_match_plaintext() {
    let params = Params::preset("insecure-n12").unwrap();
    let mut rng = common::rng();
    let layout = SlotLayout::input(3, 8, 8, params.slots()).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &[]));
    let cpu = Evaluator::new(keys.clone());
    let x: Vec<f64> = (0..layout.len()).map(|_| rng.gen_range(-1.5..1.5)).collect();
    let level = params.max_level();
    let cts = encrypt_tensor(&keys, &params, &layout, &x, level).unwrap();
    for (coeffs, levels) in [
        (vec![0.05, 0.8, -1.0], 1),
        (vec![0.05, 0.8, 0.13], 2),
        (vec![0.5, 0.2, 0.0, 1.0], 2),
        (vec![0.5, 0.2, 0.3, 1.0], 2),
        (vec![0.5, 0.19, 0.0, -0.004], 3),
    ] {
        let act = PolyActivation::new("act", coeffs.clone()).unwrap();
        assert_eq!(act.levels(), levels);
        let pending = act.apply_pending(&cpu, &layout, &cts).unwrap();
        assert_eq!(pending[0].level(), level - levels + 1, "{coeffs:?}: pending");
        let out: Vec<_> = pending.iter().map(|c| cpu.rescale(c).unwrap()).collect();
        assert_eq!(out[0].level(), level - levels, "{coeffs:?}");
        assert_eq!(
            out[0].scale(),
            params.scale(level - levels),
            "{coeffs:?}: canonical scale"
        );
        let want: Vec<f64> = x
            .iter()
            .map(|&v| coeffs.iter().rev().fold(0.0, |acc, c| acc * v + c))
            .collect();
        let got = decrypt_tensor(&sk, &layout, &out, DecryptionNoise::none()).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-3, "{coeffs:?}: max error {err}");
        let all = decrypt(&sk, &out[0]).unwrap();
        let data: f64 = layout.pack(&got)[0]
            .iter()
            .zip(&all)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            data < 1e-3,
            "{coeffs:?}: the constant leaked outside the tensor ({data})"
        );
    }
}

/// A folded model with random weights and 5 classes.
fn random_model(arch: Arch, se: bool, latent: LatentShape) -> Model<f64> {
    random_folded_model(
        &ModelSpec::with_class_count(arch, se, 5, latent).unwrap(),
        common::seed(),
    )
    .unwrap()
}

/// A model with random weights, encrypted end to end at `insecure-n12-deep`,
/// against the folded model's f64 logits.
fn model_case(arch: Arch, se: bool, latent: LatentShape, gpu: Option<&Arc<GpuContext>>) {
    model_case_batched(arch, se, latent, 1, gpu);
}

/// What [`run_encrypted`] returns: keys, input and output ciphertexts, the
/// largest logit error and the largest logit.
struct EncryptedRun {
    keys: Arc<PublicKeySet>,
    cts: Vec<latent_he::ckks::Ciphertext>,
    out: Vec<latent_he::ckks::Ciphertext>,
    err: f64,
    largest: f64,
}

/// One encrypted execution of `plan` on the images `x` (row-major, whole
/// latents of `model`) with fresh keys held as `memory`, compared with the
/// f64 forward pass.
fn run_encrypted(
    model: &Model<f64>,
    params: &Arc<Params>,
    plan: &Plan,
    x: Vec<f64>,
    memory: KeyMemory,
) -> EncryptedRun {
    let sk = SecretKey::generate(params);
    let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), memory));
    let cts = encrypt_tensor(&keys, params, &plan.input(), &x, plan.levels() + 1).unwrap();
    let out = plan.execute(&Evaluator::new(keys.clone()), params, &cts).unwrap();
    let got = decrypt_tensor(&sk, &plan.output(), &out, DecryptionNoise::none()).unwrap();
    let [c, h, w] = model.spec().latent().dims();
    let input = Array4::from_shape_vec((x.len() / (c * h * w), c, h, w), x).unwrap();
    let want: Vec<f64> = model.forward(input.view()).unwrap().iter().copied().collect();
    EncryptedRun {
        keys,
        cts,
        out,
        err: max_abs_diff(&got, &want),
        largest: want.iter().fold(0.0f64, |m, v| m.max(v.abs())),
    }
}

/// [`model_case`] for `batch` images sharing the ciphertexts.
fn model_case_batched(arch: Arch, se: bool, latent: LatentShape, batch: usize, gpu: Option<&Arc<GpuContext>>) {
    let params = Params::preset("insecure-n12-deep").unwrap();
    let model = random_model(arch, se, latent);
    let spec = model.spec();
    let plan = Plan::for_params(&model, &params, batch).unwrap();
    assert!(
        plan.levels() < params.max_level(),
        "{spec}: needs {} levels",
        plan.levels() + 1
    );
    // SE models run with compact keys (as ResNet20+SE does at n17 on a 24 GB
    // machine), the others with expanded ones: both ways through whole models.
    let memory = if se { KeyMemory::Compact } else { KeyMemory::Expanded };
    let mut rng = common::rng();
    let x: Vec<f64> = (0..batch * latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let run = run_encrypted(&model, &params, &plan, x, memory);
    assert_eq!(run.out[0].level(), 1, "{spec}: the plan's level count is exact");
    assert!(
        run.err < 1e-3,
        "{spec}: max error {} (logits up to {})",
        run.err,
        run.largest
    );
    eprintln!(
        "{spec}: {} levels, {} key switches, max error {:.1e}",
        plan.levels(),
        plan.key_switches(),
        run.err
    );
    let EncryptedRun { keys, cts, out, .. } = run;
    if let Some(ctx) = gpu {
        same_on_gpu(ctx, &keys, &cts, &out, |ev, up| plan.execute(ev, &params, up).unwrap());
    }
}

#[test]
fn resnet20_runs_encrypted_with_several_ciphertexts() {
    // 64 channels of 8x8 need two 2048-slot ciphertexts in layer 3.
    model_case(Arch::ResNet20, false, LatentShape::new(4, 8, 8).unwrap(), None);
}

#[test]
fn resnet20_with_se_runs_encrypted() {
    model_case(Arch::ResNet20, true, LatentShape::new(4, 8, 8).unwrap(), None);
}

/// The planner spends a preset's spare levels on exact means in the SE
/// gates with the largest pools, as many as fit, and never more.
#[test]
fn se_gates_take_exact_means_as_the_level_budget_allows() {
    let model = random_model(Arch::ResNet20, true, LatentShape::new(4, 8, 8).unwrap());
    let params = Params::preset("insecure-n12-deep").unwrap();
    let available = params.max_level() - latent_he::he_nn::HEADROOM_LEVELS;
    let summing = Plan::batched(&model, params.slots(), 1).unwrap();
    let planned = Plan::for_params(&model, &params, 1).unwrap();
    // Three gates pool over each of 64, 16 and 4 positions; one exact mean
    // costs a level per gate: 85 summing, 88 with the layer-1 gates exact,
    // 91 and 94 with more, and 89 levels to spend.
    assert_eq!(summing.levels(), 85);
    assert_eq!(available, 89);
    assert_eq!(planned.levels(), 88, "the layer-1 gates exact, no more");
    assert_eq!(
        planned.key_switches(),
        summing.key_switches(),
        "an exact mean needs no rotation"
    );
    // A plain ResNet20 has no gate: the same plan either way.
    let plain_spec = ModelSpec::with_class_count(Arch::ResNet20, false, 5, LatentShape::new(4, 8, 8).unwrap()).unwrap();
    let plain = random_folded_model(&plain_spec, 1).unwrap();
    assert_eq!(
        Plan::for_params(&plain, &params, 1).unwrap().levels(),
        Plan::batched(&plain, params.slots(), 1).unwrap().levels()
    );
}

/// The network gain applies where the plan has one mean on the network path
/// to divide it out (the ResNets' global pool), and nowhere else.
#[test]
fn the_network_gain_applies_where_the_global_mean_undoes_it() {
    let slots = Params::preset("insecure-n12-deep").unwrap().slots();
    let plan_of = |arch, se, latent| {
        let spec = ModelSpec::with_class_count(arch, se, 3, latent).unwrap();
        Plan::new(&random_folded_model(&spec, common::seed()).unwrap(), slots).unwrap()
    };
    let small = LatentShape::new(4, 8, 8).unwrap();
    assert_eq!(plan_of(Arch::ResNet20, false, small).network_gain(), NETWORK_GAIN);
    assert_eq!(plan_of(Arch::ResNet20, true, small).network_gain(), NETWORK_GAIN);
    let f8 = LatentShape::new(4, 32, 32).unwrap();
    assert_eq!(
        plan_of(Arch::LeNet5, false, f8).network_gain(),
        1.0,
        "LeNet5 has no global mean"
    );
    assert_eq!(
        plan_of(Arch::Vgg5, false, f8).network_gain(),
        1.0,
        "VGG5 has no global mean"
    );
}

#[test]
fn lenet5_and_vgg5_run_encrypted() {
    model_case(Arch::LeNet5, false, LatentShape::new(4, 32, 32).unwrap(), None);
    model_case(Arch::Vgg5, false, LatentShape::new(4, 32, 32).unwrap(), None);
}

#[test]
fn three_images_share_the_ciphertexts_of_a_batched_plan() {
    model_case_batched(Arch::ResNet20, false, LatentShape::new(2, 8, 8).unwrap(), 3, None);
}

#[test]
fn a_small_resnet_gives_identical_ciphertexts_on_the_gpu() {
    let ctx = gpu();
    model_case(Arch::ResNet20, false, LatentShape::new(2, 4, 4).unwrap(), Some(&ctx));
}

/// The bundled, trained ResNet20+SE on a latent of its own distribution
/// (`tests/fixtures/nn/synthetic_f8_latent.npy`: image `00000001_000.png` of
/// `latent-he synth --n 10000 --seed 1`, encoded by the bundled
/// `vqgan_f8`). Its SE gates are where the encrypted error concentrated:
/// each gate's broadcast sums the 1024, 256 or 64 slots of a channel's
/// block. With the gate gain of `fold` (step 4) the largest logit error was
/// 1.2e-4 to 5.6e-4 (1.6e-3 to 2.5e-3 without); with the inner constants of
/// the activations on data slots only, the pending rescales and the split
/// gate quadratic, 3.2e-5. The bound catches a return of the old noise.
#[test]
fn the_bundled_se_model_keeps_its_gates_precise() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = fold(&Model::load(&root.join("models/resnet20_se_f8.safetensors"), &Default::default()).unwrap());
    let latent: ndarray::Array3<f32> =
        ndarray_npy::read_npy(root.join("tests/fixtures/nn/synthetic_f8_latent.npy")).unwrap();
    let x: Vec<f64> = latent.iter().map(|&v| f64::from(v)).collect();
    let params = Params::preset("insecure-n12-deep").unwrap();
    let plan = Plan::for_params(&model, &params, 1).unwrap();
    let err = run_encrypted(&model, &params, &plan, x, KeyMemory::Compact).err;
    eprintln!("bundled ResNet20+SE, insecure-n12-deep: max logit error {err:.1e}");
    assert!(err < 2e-4, "max logit error {err}");
}

/// Image sets evaluated in lockstep (`Plan::execute_sets`, each weight
/// diagonal encoded once for all, groups of four merged into the lanes that
/// each stride leaves empty): five sets (a full group and a partial one at
/// the first merge) come out as one set of lanes, and each image's logits
/// match the f64 forward pass, through every kind of step: ResNet20+SE has
/// pending rescales, residual adds with convolution shortcuts, SE gates with
/// split quadratics and broadcasts, and both merges. A set at another level
/// is refused.
#[test]
fn sets_in_lockstep_merge_into_lanes_and_match_plaintext() {
    let params = Params::preset("insecure-n12-deep").unwrap();
    let latent = LatentShape::new(4, 8, 8).unwrap();
    let model = random_model(Arch::ResNet20, true, latent);
    let plan = Plan::for_params(&model, &params, 1).unwrap();
    assert_eq!(
        plan.sets_per_output(),
        16,
        "layers 2 and 3 leave room for 4 and 16 lanes"
    );
    // One set alone rotates nothing to merge; sixteen share the later layers.
    let layers = plan.layers(plan.levels());
    let alone: usize = layers
        .iter()
        .filter(|r| r.sets_in == r.sets)
        .map(|r| r.key_switches)
        .sum();
    assert_eq!(plan.key_switches_for(1), alone);
    assert!(plan.key_switches_for(16) < 16 * alone / 2);
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
    let ev = Evaluator::new(keys.clone());
    let mut rng = common::rng();
    let images: Vec<f64> = (0..5 * latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let inputs: Vec<_> = images
        .chunks(latent.len())
        .map(|x| encrypt_tensor(&keys, &params, &plan.input(), x, plan.levels() + 1).unwrap())
        .collect();
    let refs: Vec<&[_]> = inputs.iter().map(Vec::as_slice).collect();
    let together = plan.execute_sets(&ev, &params, &refs).unwrap();
    assert_eq!(together.len(), 1, "five sets share one output set");
    let got = decrypt_batches(&sk, &plan.output(), &together[0], 5 * 5, DecryptionNoise::none()).unwrap();
    let input = Array4::from_shape_vec((5, 4, 8, 8), images).unwrap();
    let want: Vec<f64> = model.forward(input.view()).unwrap().iter().copied().collect();
    for (i, (g, w)) in got.chunks(5).zip(want.chunks(5)).enumerate() {
        let err = max_abs_diff(g, w);
        assert!(err < 1e-3, "image {i}: max logit error {err}");
    }
    let lower: Vec<_> = inputs[1]
        .iter()
        .map(|c| ev.drop_level(c, c.level() - 1).unwrap())
        .collect();
    assert!(plan
        .execute_sets(&ev, &params, &[inputs[0].as_slice(), lower.as_slice()])
        .is_err());
}

/// Five image sets of a small ResNet20 in lockstep on the GPU, with both
/// merges into lanes: the ciphertexts equal the CPU's word for word.
#[test]
fn merged_sets_give_identical_ciphertexts_on_the_gpu() {
    let ctx = gpu();
    let params = Params::preset("insecure-n12-deep").unwrap();
    let latent = LatentShape::new(2, 4, 4).unwrap();
    let model = random_model(Arch::ResNet20, false, latent);
    let plan = Plan::for_params(&model, &params, 1).unwrap();
    assert_eq!(plan.sets_per_output(), 16);
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
    let mut rng = common::rng();
    let inputs: Vec<Vec<_>> = (0..5)
        .map(|_| {
            let x: Vec<f64> = (0..latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
            encrypt_tensor(&keys, &params, &plan.input(), &x, plan.levels() + 1).unwrap()
        })
        .collect();
    let refs: Vec<&[_]> = inputs.iter().map(Vec::as_slice).collect();
    let on_cpu = plan
        .execute_sets(&Evaluator::new(keys.clone()), &params, &refs)
        .unwrap();
    let ev = GpuEvaluator::new(&ctx, &keys).unwrap();
    let uploaded: Vec<Vec<_>> = inputs
        .iter()
        .map(|set| set.iter().map(|c| ev.upload(c).unwrap()).collect())
        .collect();
    let refs: Vec<&[_]> = uploaded.iter().map(Vec::as_slice).collect();
    let on_gpu: Vec<Vec<_>> = plan
        .execute_sets(&ev, &params, &refs)
        .unwrap()
        .iter()
        .map(|set| set.iter().map(|c| ev.download(c).unwrap()).collect())
        .collect();
    assert_eq!(on_gpu, on_cpu, "GPU and CPU ciphertexts differ");
}

/// The client's default flooding keeps a model's logits within the 1e-3 bar
/// of docs/precision.md, and moves every one of them off the exact
/// decryption.
#[test]
fn flooded_logits_stay_within_the_bar() {
    let params = Params::preset("insecure-n12-deep").unwrap();
    let latent = LatentShape::new(2, 4, 4).unwrap();
    let model = random_model(Arch::ResNet20, false, latent);
    let plan = Plan::for_params(&model, &params, 1).unwrap();
    let mut rng = common::rng();
    let x: Vec<f64> = (0..latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
    let cts = encrypt_tensor(&keys, &params, &plan.input(), &x, plan.start_level()).unwrap();
    let out = plan.execute(&Evaluator::new(keys.clone()), &params, &cts).unwrap();
    let flooded = decrypt_batches(&sk, &plan.output(), &out, 5, DecryptionNoise::default()).unwrap();
    let exact = decrypt_batches(&sk, &plan.output(), &out, 5, DecryptionNoise::none()).unwrap();
    let [c, h, w] = latent.dims();
    let want: Vec<f64> = model
        .forward(Array4::from_shape_vec((1, c, h, w), x).unwrap().view())
        .unwrap()
        .iter()
        .copied()
        .collect();
    let err = max_abs_diff(&flooded, &want);
    assert!(err < 1e-3, "flooded logits {flooded:?} against {want:?}: {err}");
    assert!(
        flooded.iter().zip(&exact).all(|(f, e)| f != e),
        "a logit left unflooded: {flooded:?} against {exact:?}"
    );
}

/// Flooding a decryption randomises its low bits: the added noise has the
/// documented standard deviation and no mean, and bits 2^-19 to 2^-22 of
/// the flooded values are uniform (a chi-square test over 16 bins, at a
/// false alarm rate of about 1e-6), though the exact decryption's are not.
#[test]
fn flooding_randomises_the_low_bits() {
    let seed = common::seed();
    let params = Params::preset("insecure-n12").unwrap();
    let sk = SecretKey::generate(&params);
    let keys = PublicKeySet::generate(&sk, &[]);
    // Values on a grid of 2^-10: their low bits, and the exact
    // decryption's, are far from uniform.
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..params.slots())
        .map(|_| f64::from(rng.gen_range(-1024i32..1024)) / 1024.0)
        .collect();
    let ct = latent_he::ckks::encrypt_values(&keys, &x).unwrap();
    let exact = decrypt(&sk, &ct).unwrap();
    let noise = DecryptionNoise::default();
    let mut flooded = exact.clone();
    noise.flood(&mut flooded, &mut rng);
    let n = flooded.len() as f64;
    let added: Vec<f64> = flooded.iter().zip(&exact).map(|(f, e)| f - e).collect();
    let mean = added.iter().sum::<f64>() / n;
    let sd = (added.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let sigma = noise.sigma();
    assert!(mean.abs() < 5.0 * sigma / n.sqrt(), "seed {seed}: mean {mean}");
    assert!((sd / sigma - 1.0).abs() < 0.1, "seed {seed}: sd {sd} against {sigma}");
    let chi_square = |values: &[f64]| {
        let mut bins = [0f64; 16];
        for v in values {
            bins[((v * 2f64.powi(22)).floor().rem_euclid(16.0)) as usize] += 1.0;
        }
        let expected = n / 16.0;
        bins.iter().map(|b| (b - expected).powi(2) / expected).sum::<f64>()
    };
    // 15 degrees of freedom: P(chi2 > 55) is about 1e-6.
    let (flooded_chi, exact_chi) = (chi_square(&flooded), chi_square(&exact));
    println!("chi-square: flooded {flooded_chi:.1}, exact {exact_chi:.1}");
    assert!(
        flooded_chi < 55.0,
        "seed {seed}: flooded low bits not uniform ({flooded_chi})"
    );
    assert!(
        exact_chi > 55.0,
        "seed {seed}: the exact low bits already look uniform ({exact_chi})"
    );
}
