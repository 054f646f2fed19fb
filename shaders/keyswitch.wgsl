// The key-switching inner product over every digit at once:
//   acc_b = sum_j digit_j * key_b_j,   acc_a = sum_j digit_j * key_a_j
// (mod each limb's prime) over the extended basis Q_l ++ P, both halves in
// one buffer (acc_b's limbs, then acc_a's), each word read and written once.
// A digit's own primes are the decomposed polynomial's limbs (`own`, still
// in evaluation form); its other limbs are the converted ones (`digits`).
// With `use_perm`, every digit is read through an automorphism's index
// permutation (hoisted rotations). With `accumulate`, the sums are added to
// what acc holds (several key switches summed before one ModDown). The key
// digits of this dispatch, `digit_base ..`, lie in key_b / key_a one after
// another, `key_limbs` limbs each (Q_L ++ P).
// Same canonical words as ckks::keyswitch on the CPU, which sums lazily.
// The bindings start at 13 so that shaders/ntt.wgsl, which this file is
// prepended to, fuses `digit_sums` into the first pass of the special
// limbs' inverse NTT (`inverse_product`).

struct InnerProduct {
    n: u32,
    log_n: u32,
    // Extended limbs (q + p).
    limbs: u32,
    // Digits in this dispatch, and the first one's index.
    digits: u32,
    digit_base: u32,
    key_limbs: u32,
    use_perm: u32,
    accumulate: u32,
}

@group(0) @binding(13) var<storage, read> own: array<u32>;
@group(0) @binding(14) var<storage, read> digits: array<u32>;
@group(0) @binding(15) var<storage, read> key_b: array<u32>;
@group(0) @binding(16) var<storage, read> key_a: array<u32>;
@group(0) @binding(17) var<storage, read> perm: array<u32>;
@group(0) @binding(18) var<storage, read_write> acc: array<u32>;
// Per ext limb i (2 words): global prime, key limb. Then per (digit j,
// ext limb i) (2 words): 1 if the limb is the digit's own (read from
// `own`), else 0 (read from `digits`); its limb position there.
@group(0) @binding(19) var<storage, read> ks_table: array<u32>;
@group(0) @binding(20) var<uniform> ks_shape: InnerProduct;

// Both sums at word k of ext limb `limb`, added to `start` (b's, a's).
fn digit_sums(k: u32, limb: u32, start: vec2<u32>) -> vec2<u32> {
    let p = primes[ks_table[2u * limb]];
    let key_limb = ks_table[2u * limb + 1u];
    var source = k;
    if ks_shape.use_perm == 1u {
        source = perm[k];
    }
    var sb = start.x;
    var sa = start.y;
    for (var j = 0u; j < ks_shape.digits; j += 1u) {
        let e = 2u * ks_shape.limbs + 2u * ((ks_shape.digit_base + j) * ks_shape.limbs + limb);
        let at = (ks_table[e + 1u] << ks_shape.log_n) + source;
        var d = 0u;
        if ks_table[e] == 1u {
            d = own[at];
        } else {
            d = digits[at];
        }
        let key_index = ((j * ks_shape.key_limbs + key_limb) << ks_shape.log_n) + k;
        sb = add_mod(sb, mul_mod(d, key_b[key_index], p), p.q);
        sa = add_mod(sa, mul_mod(d, key_a[key_index], p), p.q);
    }
    return vec2<u32>(sb, sa);
}

@compute @workgroup_size(256)
fn inner_product(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let limb = gid.y;
    if k >= ks_shape.n || limb >= ks_shape.limbs {
        return;
    }
    let ib = (limb << ks_shape.log_n) + k;
    let ia = ((ks_shape.limbs + limb) << ks_shape.log_n) + k;
    var start = vec2<u32>(0u, 0u);
    if ks_shape.accumulate == 1u {
        start = vec2<u32>(acc[ib], acc[ia]);
    }
    let s = digit_sums(k, limb, start);
    acc[ib] = s.x;
    acc[ia] = s.y;
}
