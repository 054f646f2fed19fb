// Limb-wise kernels driven by a table with one 8-word row per output limb
// (the format the NTT's finishing store reads too, shaders/ntt.wgsl):
//   [0] global prime of the output limb,
//   [1] a constant and [2] its Shoup quotient,
//   [3] the limb of `a` it reads, [4] unused,
//   [5], [6] the NTT's finishing store only, [7] unused.
// One invocation per output word. Output limb l, position k is out[l][k].

struct Limbwise {
    // Words per limb (N) and its log2.
    n: u32,
    log_n: u32,
    // Output words.
    words: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<uniform> shape: Limbwise;
// An automorphism's index permutation (N words).
@group(0) @binding(7) var<storage, read> perm: array<u32>;

fn word(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

struct Row {
    p: PrimeConsts,
    value: u32,
    shoup: u32,
    a_base: u32,
}

fn row(i: u32) -> Row {
    let r = 8u * (i >> shape.log_n);
    return Row(primes[rows[r]], rows[r + 1u], rows[r + 2u], rows[r + 3u] << shape.log_n);
}

// out[l] = a[l'] * constant.
@compute @workgroup_size(256)
fn mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    out[i] = mul_shoup(a[r.a_base + k], r.value, r.shoup, r.p.q);
}

// out[l] = a[l'] + constant (the constant canonical).
@compute @workgroup_size(256)
fn add_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    out[i] = add_mod(a[r.a_base + k], r.value, r.p.q);
}

// out[l] += a[l'][perm[k]]: a rotated half added to a running sum.
@compute @workgroup_size(256)
fn add_permuted(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    out[i] = add_mod(out[i], a[r.a_base + perm[k]], r.p.q);
}

// out[l][k] = v mod q_l, canonical, for the signed 64-bit coefficient k of
// polynomial l' (the row's limb of `a`, N coefficients of two words each):
// v = a[2 (l' N + k)] + 2^32 a[2 (l' N + k) + 1] (two's complement,
// |v| < 2^63): |v| is reduced
// as hi * (2^32 mod q) + lo, both Shoup products, then negated for v < 0,
// the same residue as the CPU's `Modulus::reduce_i64`.
@compute @workgroup_size(256)
fn reduce_signed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let p = r.p;
    let at = 2u * (r.a_base + (i & (shape.n - 1u)));
    var lo = a[at];
    var hi = a[at + 1u];
    let negative = (hi & 0x80000000u) != 0u;
    if negative {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    let high = mul_shoup(hi, p.two32, p.two32_shoup, p.q);
    let low = mul_shoup(lo, 1u, p.one_shoup, p.q);
    let v = add_mod(high, low, p.q);
    out[i] = select(v, sub_mod(0u, v, p.q), negative);
}
