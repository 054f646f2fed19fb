//! Every GPU kernel against the CPU reference, word for word, on fresh random
//! polynomials of several presets. These tests need an adapter: on a machine
//! without a GPU, lavapipe (`mesa-vulkan-drivers`) provides one, and `.ci/run`
//! installs it. Without any adapter they fail, loudly, rather than skip.

mod common;

use latent_he::backend::gpu::kernels::{ConvertRow, NttInput, NttLimb, NttOutput, Sums};
use latent_he::backend::gpu::{GpuContext, GpuError, GpuPoly, GpuRing};
use latent_he::ckks::Params;
use latent_he::ring::sampler::Sampler;
use latent_he::ring::{Eval, LimbLayout, RingContext, RnsPoly};
use rand::Rng;
use std::sync::Arc;

fn context() -> Arc<GpuContext> {
    match GpuContext::new(None) {
        Ok(ctx) => {
            eprintln!("GPU tests on {} ({})", ctx.adapter().name, ctx.adapter().backend);
            ctx
        }
        Err(e) => panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (apt-get install -y mesa-vulkan-drivers)"),
    }
}

fn mismatches(a: &[u32], b: &[u32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// A few ciphertext limbs and every special limb: every prime size is covered
/// without paying for all limbs of the large presets on lavapipe.
fn layout_for(params: &Params) -> LimbLayout {
    LimbLayout {
        q: (params.max_level() + 1).min(3),
        p: params.ring().p_count().min(2),
    }
}

#[test]
fn ntt_and_elementwise_kernels_match_the_cpu_bit_for_bit() {
    context();
    for use_int64 in [false, true] {
        let ctx = GpuContext::open(None, use_int64).unwrap();
        ntt_and_elementwise(&ctx, use_int64);
    }
}

fn ntt_and_elementwise(ctx: &Arc<GpuContext>, use_int64: bool) {
    for preset in ["insecure-n12", "n14", "n16", "n17"] {
        let params = Params::preset(preset).unwrap();
        let ring = params.ring();
        let gpu = GpuRing::new(ctx, ring).unwrap();
        let layout = layout_for(&params);
        let preset = format!("{preset} ({:?}, int64 asked: {use_int64})", ctx.wide_mul());
        let mut sampler = Sampler::from_seed(common::rng().gen());
        let a: RnsPoly<Eval> = sampler.uniform(ring, layout);
        let b: RnsPoly<Eval> = sampler.uniform(ring, layout);
        let a_coeff = a.clone().into_coeff(ring);

        let forward_cpu = a_coeff.clone().into_eval(ring);
        let forward_gpu = gpu.download(&gpu.into_eval(gpu.upload(&a_coeff)).unwrap()).unwrap();
        assert_eq!(
            mismatches(forward_cpu.words(), forward_gpu.words()),
            0,
            "{preset}: forward NTT"
        );

        let inverse_gpu = gpu.download(&gpu.into_coeff(gpu.upload(&a)).unwrap()).unwrap();
        assert_eq!(
            mismatches(a_coeff.words(), inverse_gpu.words()),
            0,
            "{preset}: inverse NTT"
        );

        type GpuOp = fn(&GpuRing, &GpuPoly<Eval>, &GpuPoly<Eval>) -> Result<(), GpuError>;
        type CpuOp = fn(&mut RnsPoly<Eval>, &RingContext, &RnsPoly<Eval>);
        let ops: [(&str, GpuOp, CpuOp); 3] = [
            ("mul", GpuRing::mul_assign, RnsPoly::mul_assign),
            ("add", GpuRing::add_assign, RnsPoly::add_assign),
            ("sub", GpuRing::sub_assign, RnsPoly::sub_assign),
        ];
        for (name, gpu_op, cpu_op) in ops {
            let (ga, gb) = (gpu.upload(&a), gpu.upload(&b));
            gpu_op(&gpu, &ga, &gb).unwrap();
            let mut want = a.clone();
            cpu_op(&mut want, ring, &b);
            let got = gpu.download(&ga).unwrap();
            assert_eq!(mismatches(want.words(), got.words()), 0, "{preset}: {name}");
        }
    }
}

#[test]
fn products_near_the_top_of_the_word_match() {
    // Values next to q - 1 exercise every carry of the 16-bit-halves product;
    // both the portable and (where the adapter has it) the INT64 product.
    for use_int64 in [false, true] {
        let ctx = GpuContext::open(None, use_int64).unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}"));
        eprintln!("wide product: {:?}", ctx.wide_mul());
        edge_products(&ctx);
    }
}

fn edge_products(ctx: &Arc<GpuContext>) {
    let params = Params::preset("insecure-n12").unwrap();
    let ring = params.ring();
    let gpu = GpuRing::new(ctx, ring).unwrap();
    let layout = ring.full_layout();
    let n = ring.n();
    let mut edge = RnsPoly::<Eval>::zero(n, layout);
    for i in 0..layout.len() {
        let q = ring.modulus(layout, i).value();
        for (k, w) in edge.limb_mut(i).iter_mut().enumerate() {
            *w = match k % 4 {
                0 => q - 1,
                1 => q - 1 - (k as u32 % 1000),
                2 => (k as u32) % 3,
                _ => q / 2 + (k as u32 % 7),
            };
        }
    }
    let g = gpu.upload(&edge);
    gpu.mul_assign(&g, &gpu.upload(&edge)).unwrap();
    let mut cpu = edge.clone();
    cpu.mul_assign(ring, &edge);
    assert_eq!(mismatches(cpu.words(), gpu.download(&g).unwrap().words()), 0);
}

#[test]
fn basis_conversion_matches_the_cpu_plain_and_centred() {
    use latent_he::ring::basis::BasisConverter;
    use latent_he::ring::Coeff;
    let ctx = context();
    for preset in ["insecure-n12", "n16"] {
        let params = Params::preset(preset).unwrap();
        let ring = params.ring();
        let gpu = GpuRing::new(&ctx, ring).unwrap();
        let n = ring.n();
        // ModUp of the first digit to a few other ciphertext primes and to the
        // special primes (31-bit sources into 30-bit targets and back).
        let alpha = params.alpha();
        let converter = BasisConverter::new(ring, (0..alpha).collect());
        let targets: Vec<usize> = (alpha..alpha + 2).chain(ring.q_count()..ring.global_count()).collect();
        let input: RnsPoly<Coeff> = Sampler::from_seed(common::rng().gen())
            .uniform(ring, LimbLayout::q_only(alpha))
            .into_coeff(ring);
        let device_input = gpu.upload(&input).words();
        for centered in [false, true] {
            let mut expected = vec![0u32; n * targets.len()];
            {
                let inputs: Vec<&[u32]> = input.limbs().collect();
                let mut outputs: Vec<(usize, &mut [u32])> =
                    targets.iter().copied().zip(expected.chunks_exact_mut(n)).collect();
                if centered {
                    converter.convert_centered(ring, &inputs, &mut outputs);
                } else {
                    converter.convert(ring, &inputs, &mut outputs);
                }
            }
            let rows: Vec<ConvertRow> = targets
                .iter()
                .enumerate()
                .map(|(j, &target)| ConvertRow {
                    converter: &converter,
                    first_source: 0,
                    target,
                    out: j,
                    centered,
                })
                .collect();
            let table = gpu.convert_table(&rows);
            let output = gpu.scratch(targets.len());
            gpu.convert(&output, &device_input, &table).unwrap();
            let got = gpu.download_words(&output).unwrap();
            // The same conversion fused into the first pass of a forward NTT.
            let transformed = gpu.scratch(targets.len());
            let limbs: Vec<NttLimb> = rows.iter().map(|r| NttLimb::from(r.target, r.out, r.out)).collect();
            let input = NttInput::Converted {
                input: &device_input,
                table: &table,
            };
            gpu.ntt(&transformed, &limbs, input, NttOutput::InPlace, false).unwrap();
            let mut expected_eval = expected.clone();
            for (limb, &t) in expected_eval.chunks_exact_mut(n).zip(&targets) {
                ring.global_table(t).forward(limb);
            }
            let got_eval = gpu.download_words(&transformed).unwrap();
            assert_eq!(
                mismatches(&expected_eval, &got_eval),
                0,
                "{preset}, centred: {centered}, fused into the NTT"
            );
            assert_eq!(mismatches(&expected, &got), 0, "{preset}, centred: {centered}");
        }
    }
}

#[test]
fn key_switch_inner_product_matches_a_schoolbook_reference() {
    use latent_he::ring::automorphism::{eval_permutation, rotation_galois_element};
    let ctx = context();
    for preset in ["insecure-n12", "n14"] {
        let params = Params::preset(preset).unwrap();
        let ring = params.ring();
        let gpu = GpuRing::new(&ctx, ring).unwrap();
        let n = ring.n();
        let mut sampler = Sampler::from_seed(common::rng().gen());
        // A digit at a level below the top: the key's limbs above the level
        // are skipped.
        let level = params.max_level() - 2;
        let ext = params.extended_layout(level);
        let full = ring.full_layout();
        let digits: Vec<RnsPoly<Eval>> = (0..2).map(|_| sampler.uniform(ring, ext)).collect();
        let keys: Vec<(RnsPoly<Eval>, RnsPoly<Eval>)> = (0..2)
            .map(|_| (sampler.uniform(ring, full), sampler.uniform(ring, full)))
            .collect();
        let perm = eval_permutation(rotation_galois_element(3, n), n);
        // Both digits' limbs in one buffer, as the evaluator's converted limbs.
        let digit_words: Vec<u32> = digits.iter().flat_map(|d| d.words().iter().copied()).collect();
        let converted = gpu.upload_words(&digit_words);
        let key_words: Vec<(&[u32], &[u32])> = keys.iter().map(|(b, a)| (b.words(), a.words())).collect();
        let key = gpu.upload_key(&key_words, full.len()).unwrap();
        let mut table: Vec<u32> = (0..ext.len())
            .flat_map(|i| {
                let key_limb = if i < ext.q { i } else { full.q + i - ext.q };
                [ring.global_index(ext, i) as u32, key_limb as u32]
            })
            .collect();
        table.extend((0..2 * ext.len()).flat_map(|pos| [0, pos as u32]));
        let table = gpu.constant_buffer(&table);
        // The special limbs of both halves, for the fused inverse NTT.
        let special: Vec<NttLimb> = (0..2)
            .flat_map(|h| (ext.q..ext.len()).map(move |i| (h, i)))
            .map(|(h, i)| NttLimb::in_place(ring.global_index(ext, i), h * ext.len() + i))
            .collect();
        for (use_perm, inverse) in [(false, false), (true, false), (true, true)] {
            let acc = gpu.scratch(2 * ext.len());
            let perm_words = gpu.upload_words(&perm);
            let p = use_perm.then_some(&perm_words);
            let sums = if inverse { Sums::Inverse(&special) } else { Sums::Write };
            gpu.inner_product(&converted, &converted, &key, p, &acc, &table, (ext.len(), 2), sums)
                .unwrap();
            let got = gpu.download_words(&acc).unwrap();
            for i in 0..ext.len() {
                let m = ring.modulus(ext, i);
                let key_limb = if i < ext.q { i } else { full.q + i - ext.q };
                let (mut want_b, mut want_a) = (vec![0u32; n], vec![0u32; n]);
                for (k, &permuted) in perm.iter().enumerate() {
                    let source = if use_perm { permuted as usize } else { k };
                    for (d, (kb, ka)) in digits.iter().zip(&keys) {
                        let v = d.limb(i)[source];
                        want_b[k] = m.add(want_b[k], m.mul(v, kb.limb(key_limb)[k]));
                        want_a[k] = m.add(want_a[k], m.mul(v, ka.limb(key_limb)[k]));
                    }
                }
                for (h, want) in [want_b, want_a].iter_mut().enumerate() {
                    if inverse && i >= ext.q {
                        ring.global_table(ring.global_index(ext, i)).inverse(want);
                    }
                    let at = (h * ext.len() + i) * n;
                    let mismatched = (0..n).filter(|&k| got[at + k] != want[k]).count();
                    assert_eq!(
                        mismatched, 0,
                        "{preset} half {h} limb {i} (perm {use_perm}, inverse {inverse})"
                    );
                }
            }
        }
    }
}
