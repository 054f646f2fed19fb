// The key-switching inner product, one digit per dispatch:
//   acc_b += digit * key_b,   acc_a += digit * key_a   (mod each limb's prime)
// over the extended basis Q_l ++ P. The key is resident over Q_L ++ P: ext
// limb i reads key limb `limb_table[limbs + i]`. With `use_perm`, the digit is
// read through an automorphism's index permutation (hoisted rotations).
// Same canonical words as ckks::keyswitch on the CPU, which sums lazily.

struct InnerProduct {
    n: u32,
    limbs: u32,
    use_perm: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> digit: array<u32>;
@group(0) @binding(1) var<storage, read> key_b: array<u32>;
@group(0) @binding(2) var<storage, read> key_a: array<u32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read_write> acc_b: array<u32>;
@group(0) @binding(5) var<storage, read_write> acc_a: array<u32>;
@group(0) @binding(6) var<storage, read> primes: array<PrimeConsts>;
// limbs entries: global prime of each ext limb; then limbs entries: key limb.
@group(0) @binding(7) var<storage, read> limb_table: array<u32>;
@group(0) @binding(8) var<uniform> shape: InnerProduct;

@compute @workgroup_size(256)
fn inner_product(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let limb = gid.y;
    if k >= shape.n || limb >= shape.limbs {
        return;
    }
    let p = primes[limb_table[limb]];
    var source = k;
    if shape.use_perm == 1u {
        source = perm[k];
    }
    let d = digit[limb * shape.n + source];
    let key_index = limb_table[shape.limbs + limb] * shape.n + k;
    let i = limb * shape.n + k;
    acc_b[i] = add_mod(acc_b[i], mul_mod(d, key_b[key_index], p), p.q);
    acc_a[i] = add_mod(acc_a[i], mul_mod(d, key_a[key_index], p), p.q);
}
