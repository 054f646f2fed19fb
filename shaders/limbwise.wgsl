// Limb-wise kernels driven by a table with one 8-word row per output limb:
//   [0] global prime of the output limb,
//   [1] a constant and [2] its Shoup quotient,
//   [3] limb of `a`, [4] limb of `b`, [5] limb of `c` it reads,
//   [6] a mode (mod_down_finish), [7] a source prime (broadcast_centered).
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
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<uniform> shape: Limbwise;
@group(0) @binding(6) var<storage, read> c: array<u32>;
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
    b_base: u32,
    c_base: u32,
    mode: u32,
    source_prime: u32,
}

fn row(i: u32) -> Row {
    let r = 8u * (i >> shape.log_n);
    let n = shape.log_n;
    return Row(
        primes[rows[r]],
        rows[r + 1u],
        rows[r + 2u],
        rows[r + 3u] << n,
        rows[r + 4u] << n,
        rows[r + 5u] << n,
        rows[r + 6u],
        rows[r + 7u],
    );
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

// out[l] = (a[l'] - b[l'']) * constant: the last step of a rescale.
@compute @workgroup_size(256)
fn sub_mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    out[i] = mul_shoup(sub_mod(a[r.a_base + k], b[r.b_base + k], r.p.q), r.value, r.shoup, r.p.q);
}

// The last step of ModDown, with what the operation adds to it:
// out[l] = (a[l'] - b[l'']) * constant + extra, extra by mode:
// 0 nothing, 1 out's own word (a running sum), 2 c[l'''][k],
// 3 c[l'''][perm[k]] (the untouched half of a rotated ciphertext).
@compute @workgroup_size(256)
fn mod_down_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    var v = mul_shoup(sub_mod(a[r.a_base + k], b[r.b_base + k], r.p.q), r.value, r.shoup, r.p.q);
    switch r.mode {
        case 1u: {
            v = add_mod(v, out[i], r.p.q);
        }
        case 2u: {
            v = add_mod(v, c[r.c_base + k], r.p.q);
        }
        case 3u: {
            v = add_mod(v, c[r.c_base + perm[k]], r.p.q);
        }
        default: {}
    }
    out[i] = v;
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

// out[l] = centred(a[l'][k]) mod q_l, a's limb over source_prime: the
// broadcast of a rescale's last limb to the primes below it.
@compute @workgroup_size(256)
fn broadcast_centered(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let r = row(i);
    let k = i & (shape.n - 1u);
    let s = primes[r.source_prime].q;
    let x = a[r.a_base + k];
    // x and s are below 2^31: one Shoup product by 1 reduces any u32.
    var v = mul_shoup(x, 1u, r.p.one_shoup, r.p.q);
    if x > s / 2u {
        v = sub_mod(v, mul_shoup(s, 1u, r.p.one_shoup, r.p.q), r.p.q);
    }
    out[i] = v;
}

// out[l][k] = v mod q_l, canonical, for the signed 64-bit coefficient
// v = a[2k] + 2^32 a[2k + 1] (two's complement, |v| < 2^63): |v| is reduced
// as hi * (2^32 mod q) + lo, both Shoup products, then negated for v < 0,
// the same residue as the CPU's `Modulus::reduce_i64`.
@compute @workgroup_size(256)
fn reduce_signed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = row(i).p;
    let k = i & (shape.n - 1u);
    var lo = a[2u * k];
    var hi = a[2u * k + 1u];
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
