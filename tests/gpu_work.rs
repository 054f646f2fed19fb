//! Budgets on the work the GPU backend records for one operation at the top
//! level of the 128-bit N = 2^16 preset, in steady state (the third run of
//! the operation: the second run's scratch buffers are back in the pool and
//! its bind groups cached). The counts are those of the commands recorded;
//! they depend only on the parameters and the code, never on the adapter,
//! so they hold on lavapipe as on any GPU. The commands are recorded, not
//! run: nothing here waits for the device (lavapipe would take minutes),
//! and the results' words are checked by `tests/gpu_eval.rs` and `latent-he
//! check`. Needs an adapter (lavapipe in CI); fails loudly without one.

mod common;

use latent_he::backend::gpu::{GpuContext, GpuWork};
use latent_he::ckks::gpu_cost::{GpuCost, GpuCostModel, DEVICE_PROFILES};
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{encode_coeffs, encrypt_values, KeyMemory, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::{encrypt_tensor, Plan, WeightStore};
use latent_he::nn::{random_folded_model, Arch, LatentShape, LoadOptions, ModelSpec};
use latent_he::pipeline::Planned;
use std::path::Path;
use std::sync::Arc;

/// The work of the third of three runs of `op`.
fn steady<T>(gpu: &GpuEvaluator, mut op: impl FnMut() -> T) -> GpuWork {
    op();
    op();
    let before = gpu.work();
    op();
    gpu.work().since(&before)
}

#[test]
fn key_switching_operations_stay_within_their_budgets_at_n16() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let params = Params::preset("n16").unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &[1, 32]));
    let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
    let values: Vec<f64> = (0..params.slots()).map(|i| (i % 7) as f64 / 7.0).collect();
    let x = gpu.upload(&encrypt_values(&keys, &values).unwrap()).unwrap();
    let top = x.level();
    assert_eq!(top, params.max_level());

    // A rotation: inverse NTT of c1 (2 passes), every digit's conversion
    // fused into its forward NTT (2), one inner product computed with the
    // first pass of the special limbs' inverse NTT, its second pass (1),
    // ModDown's conversion and finish fused into its forward NTT (2).
    let rotation = steady(&gpu, || gpu.rotate_hoisted(&x, &[1]).unwrap());
    eprintln!("rotation at level {top}: {rotation:?}");
    assert!(rotation.dispatches <= 8, "{rotation:?}");
    assert_eq!((rotation.copies, rotation.buffers_created, rotation.uploads), (0, 0, 0));

    // Hoisted: one decomposition, then 4 dispatches per rotation.
    let hoisted = steady(&gpu, || gpu.rotate_hoisted(&x, &[1, 32]).unwrap());
    assert!(hoisted.dispatches <= 4 + 2 * 4, "{hoisted:?}");
    assert_eq!(hoisted.buffers_created, 0, "{hoisted:?}");

    // A sum of products over the hoisted rotations (one buffer) and
    // plaintexts finished together: one kernel.
    let rotated = gpu.rotate_hoisted(&x, &[1, 32]).unwrap();
    let encoded = || {
        (0..rotated.len())
            .map(|_| encode_coeffs(&params, &values, top, params.mul_plain_scale(top, x.scale())).unwrap())
            .collect()
    };
    let plaintexts = gpu.plaintexts(encoded()).unwrap();
    let terms: Vec<_> = rotated.iter().zip(&plaintexts).collect();
    let product_sum = steady(&gpu, || gpu.mul_plain_sum(&terms).unwrap());
    assert_eq!(product_sum.dispatches, 1, "{product_sum:?}");
    assert_eq!(product_sum.buffers_created, 0, "{product_sum:?}");

    // Multiply, relinearize, rescale: the tensor product computed with the
    // first pass of d2's inverse NTT, its second pass (2), the rest of the
    // key switch of d2 with d0 and d1 added by ModDown's finish (6), the
    // rescale (inverse NTT of the last limbs, broadcast fused into the
    // forward NTT, finish fused into its last pass: 4).
    let product = steady(&gpu, || gpu.rescale(&gpu.mul_relin(&x, &x).unwrap()).unwrap());
    eprintln!("multiply, relinearize, rescale at level {top}: {product:?}");
    assert!(product.dispatches <= 12, "{product:?}");
    assert_eq!((product.copies, product.buffers_created, product.uploads), (0, 0, 0));

    // A giant step of a rotation sum: decomposition (4), the inner product
    // accumulated into the running sums (1), the rotated c0 added (1); and
    // the one ModDown that finishes the sum (4).
    let first = gpu.rotation_sum_add(None, &x, 1).unwrap();
    let mut sum = Some(first);
    let giant_step = steady(&gpu, || sum = Some(gpu.rotation_sum_add(sum.take(), &x, 32).unwrap()));
    eprintln!("rotation-sum giant step at level {top}: {giant_step:?}");
    assert!(giant_step.dispatches <= 6, "{giant_step:?}");
    assert_eq!((giant_step.copies, giant_step.buffers_created), (0, 0));
    let before = gpu.work();
    gpu.rotation_sum_finish(sum.take().unwrap()).unwrap();
    let finish = gpu.work().since(&before);
    assert!(finish.dispatches <= 4, "{finish:?}");
}

#[test]
fn a_profile_times_every_dispatch_by_kernel() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let params = Params::preset("insecure-n12").unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &[1]));
    let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
    let values: Vec<f64> = (0..params.slots()).map(|i| (i % 5) as f64 / 5.0).collect();
    let x = gpu.upload(&encrypt_values(&keys, &values).unwrap()).unwrap();
    // lavapipe has TIMESTAMP_QUERY; an adapter without it says so.
    if let Err(e) = ctx.start_profile() {
        panic!("no profile on {}: {e}", ctx.adapter().name);
    }
    let before = gpu.work();
    let product = gpu.rescale(&gpu.mul_relin(&x, &x).unwrap()).unwrap();
    gpu.rotate_hoisted(&product, &[1]).unwrap();
    gpu.ring().sync().unwrap();
    let work = gpu.work().since(&before);
    let kernels = ctx.finish_profile().unwrap();
    eprintln!("{kernels:#?}");
    let timed: u64 = kernels.values().map(|k| k.dispatches).sum();
    assert_eq!(timed, work.dispatches, "one timing per dispatch");
    for name in [
        "inverse_tensor",
        "inverse_product",
        "forward_converted_finish",
        "inverse_from",
    ] {
        assert!(kernels.contains_key(name), "{name} missing from {kernels:?}");
    }
    assert!(kernels.values().all(|k| k.gpu_ms >= 0.0 && k.gpu_ms.is_finite()));
    assert!(kernels.values().map(|k| k.gpu_ms).sum::<f64>() > 0.0);
    // Ended: nothing more is timed.
    assert!(ctx.finish_profile().unwrap().is_empty());
}

/// The cost model's dispatches per operation equal the recorder's, at the
/// top level of `insecure-n12-deep` (one NTT pass) and of `n16` (two).
#[test]
fn the_cost_model_counts_each_operation_as_recorded() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    for preset in ["insecure-n12-deep", "n16"] {
        let params = Params::preset(preset).unwrap();
        let sk = SecretKey::generate(&params);
        let keys = Arc::new(PublicKeySet::generate(&sk, &[1, 32]));
        let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
        let model = GpuCostModel::new(&params, gpu.ring().binding_limit()).unwrap();
        let values: Vec<f64> = (0..params.slots()).map(|i| (i % 7) as f64 / 7.0).collect();
        let x = gpu.upload(&encrypt_values(&keys, &values).unwrap()).unwrap();
        let top = x.level();
        let count = |op: &mut dyn FnMut()| steady(&gpu, op).dispatches;
        let at = |what: &str, recorded: u64, predicted: u64| {
            assert_eq!(
                recorded, predicted,
                "{preset} {what}: recorded {recorded}, predicted {predicted}"
            );
        };
        at(
            "rotation",
            count(&mut || drop(gpu.rotate_hoisted(&x, &[1]).unwrap())),
            model.rotate_hoisted(1),
        );
        at(
            "hoisted rotations",
            count(&mut || drop(gpu.rotate_hoisted(&x, &[1, 0, 32]).unwrap())),
            model.rotate_hoisted(2),
        );
        at(
            "identity rotation",
            count(&mut || drop(gpu.rotate_hoisted(&x, &[0]).unwrap())),
            model.rotate_hoisted(0),
        );
        at(
            "multiply, relinearize",
            count(&mut || drop(gpu.mul_relin(&x, &x).unwrap())),
            model.mul_relin(),
        );
        at(
            "rescale",
            count(&mut || drop(gpu.rescale(&x).unwrap())),
            model.rescale(),
        );
        at(
            "add",
            count(&mut || drop(gpu.add(&x, &x).unwrap())),
            model.elementwise(),
        );
        let encoded = || encode_coeffs(&params, &values, top, params.scale(top)).unwrap();
        at(
            "three plaintexts",
            count(&mut || drop(gpu.plaintexts(vec![encoded(), encoded(), encoded()]).unwrap())),
            model.finish_plaintexts(),
        );
        for keyed in [false, true] {
            let steps = i64::from(keyed);
            let mut sum = Some(gpu.rotation_sum_add(None, &x, steps).unwrap());
            at(
                "rotation-sum term",
                count(&mut || sum = Some(gpu.rotation_sum_add(sum.take(), &x, steps).unwrap())),
                model.rotation_sum_add(keyed),
            );
            let before = gpu.work();
            gpu.rotation_sum_finish(sum.take().unwrap()).unwrap();
            at(
                "rotation-sum finish",
                gpu.work().since(&before).dispatches,
                model.rotation_sum_finish(keyed),
            );
        }
    }
}

/// The plan's predicted dispatches for a whole ResNet20 on a 2x8x8 latent
/// at `insecure-n12-deep` equal what the GPU evaluator records running it,
/// for the first image (which encodes the weights and keeps them in a
/// [`WeightStore`]) and for the next (which reads them from the store): the
/// per-step sum of [`GpuCostModel`] over the executor's own calls. The next
/// image uploads no weight and gives the first's ciphertexts.
#[test]
fn the_plan_predicts_the_dispatches_of_a_whole_network() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let seed = common::seed();
    let params = Params::preset("insecure-n12-deep").unwrap();
    let spec = ModelSpec::with_class_count(Arch::ResNet20, false, 5, LatentShape::new(2, 8, 8).unwrap()).unwrap();
    let net = random_folded_model(&spec, seed).unwrap();
    let plan = Plan::for_params(&net, &params, 1).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
    let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
    let model = GpuCostModel::new(&params, gpu.ring().binding_limit()).unwrap();
    let predicted = plan.gpu_cost(&params, model, 1, u64::MAX).unwrap();
    let steady: u64 = predicted.steps.iter().map(|s| s.cost.dispatches).sum();

    let x: Vec<f64> = (0..spec.latent().len()).map(|i| ((i % 9) as f64 - 4.0) / 8.0).collect();
    let cts = encrypt_tensor(&keys, &params, &plan.input(), &x, plan.start_level()).unwrap();
    let up: Vec<_> = cts.iter().map(|c| gpu.upload(c).unwrap()).collect();
    let weights = WeightStore::new(&params, u64::MAX);
    let run = || {
        let before = gpu.work();
        let out = plan
            .execute_sets_kept(&gpu, &params, &[up.as_slice()], &weights)
            .unwrap();
        (gpu.work().since(&before), out)
    };
    let (first, first_out) = run();
    let (next, out) = run();
    eprintln!(
        "ResNet20 2x8x8, insecure-n12-deep: first image {} dispatches predicted, {first:?} recorded; \
         next {steady} predicted, {next:?} recorded; {} weight bytes kept",
        predicted.first.dispatches,
        weights.bytes()
    );
    assert_eq!(first.dispatches, predicted.first.dispatches, "{predicted:#?}");
    assert_eq!(next.dispatches, steady, "{predicted:#?}");
    assert_eq!(weights.bytes(), predicted.resident_weight_bytes);
    assert!(next.dispatches < first.dispatches);
    // What the next image still uploads: biases and constants, not weights.
    assert!(
        next.upload_bytes * 20 < first.upload_bytes,
        "{} bytes uploaded by the next image, {} by the first",
        next.upload_bytes,
        first.upload_bytes
    );
    // The first image's words are the CPU's (tests/he_nn.rs); the next's
    // must be the first's.
    let words = |cts: &[latent_he::ckks::gpu_eval::GpuCiphertext]| {
        cts.iter().map(|c| gpu.download(c).unwrap()).collect::<Vec<_>>()
    };
    assert!(
        words(&out[0]) == words(&first_out[0]),
        "the next image's logits differ from the first's"
    );
}

/// The per-image bars for the bundled ResNet20 at f=8 under `n16`, on the
/// plan's prediction (held to the recorder by the test above; a real n16
/// run on lavapipe takes too long for CI): with the weights kept on the
/// device, every image after the first takes at most 8,000 dispatches,
/// encodes no plaintext on the host (no FFT) and uploads at most 64 MB.
#[test]
fn resnet20_f8_at_n16_meets_the_per_image_bars_with_its_weights_kept() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/resnet20_f8.safetensors");
    let planned = Planned::load(&path, &LoadOptions::default(), Some("n16"), 1).unwrap();
    let h100 = &DEVICE_PROFILES[0];
    assert_eq!(h100.name, "h100");
    let model = GpuCostModel::new(&planned.params, h100.binding_bytes).unwrap();
    let cost = planned.plan.gpu_cost(&planned.params, model, 1, u64::MAX).unwrap();
    let per_image = cost.steps.iter().fold(GpuCost::default(), |sum, s| sum.plus(&s.cost));
    eprintln!(
        "ResNet20 f=8 n16: first image {:?}; every later image {per_image:?}; {} weight bytes kept",
        cost.first, cost.resident_weight_bytes
    );
    assert!(per_image.dispatches <= 8_000, "{per_image:?}");
    assert_eq!(per_image.plaintexts, 0, "plaintexts still encoded per image");
    assert!(per_image.plaintext_upload_bytes <= 64 << 20, "{per_image:?}");
    // The first image does the encoding the others skip.
    assert!(cost.first.plaintexts > 9_000 && cost.first.dispatches > per_image.dispatches + 2_000);
}
