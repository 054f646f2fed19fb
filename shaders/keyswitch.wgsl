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

@group(0) @binding(0) var<storage, read> own: array<u32>;
@group(0) @binding(1) var<storage, read> digits: array<u32>;
@group(0) @binding(2) var<storage, read> key_b: array<u32>;
@group(0) @binding(3) var<storage, read> key_a: array<u32>;
@group(0) @binding(4) var<storage, read> perm: array<u32>;
@group(0) @binding(5) var<storage, read_write> acc: array<u32>;
@group(0) @binding(6) var<storage, read> primes: array<PrimeConsts>;
// Per ext limb i (2 words): global prime, key limb. Then per (digit j,
// ext limb i) (2 words): 1 if the limb is the digit's own (read from
// `own`), else 0 (read from `digits`); its limb position there.
@group(0) @binding(7) var<storage, read> table: array<u32>;
@group(0) @binding(8) var<uniform> shape: InnerProduct;

@compute @workgroup_size(256)
fn inner_product(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let limb = gid.y;
    if k >= shape.n || limb >= shape.limbs {
        return;
    }
    let p = primes[table[2u * limb]];
    let key_limb = table[2u * limb + 1u];
    var source = k;
    if shape.use_perm == 1u {
        source = perm[k];
    }
    let ib = (limb << shape.log_n) + k;
    let ia = ((shape.limbs + limb) << shape.log_n) + k;
    var sb = 0u;
    var sa = 0u;
    if shape.accumulate == 1u {
        sb = acc[ib];
        sa = acc[ia];
    }
    for (var j = 0u; j < shape.digits; j += 1u) {
        let e = 2u * shape.limbs + 2u * ((shape.digit_base + j) * shape.limbs + limb);
        let at = (table[e + 1u] << shape.log_n) + source;
        var d = 0u;
        if table[e] == 1u {
            d = own[at];
        } else {
            d = digits[at];
        }
        let key_index = ((j * shape.key_limbs + key_limb) << shape.log_n) + k;
        sb = add_mod(sb, mul_mod(d, key_b[key_index], p), p.q);
        sa = add_mod(sa, mul_mod(d, key_a[key_index], p), p.q);
    }
    acc[ib] = sb;
    acc[ia] = sa;
}
