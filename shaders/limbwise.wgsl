// Limb-wise kernels with a per-limb or per-word table: automorphism
// permutation, multiplication by a per-limb constant (Shoup), subtract then
// multiply, the broadcast of one limb's centred value to other primes
// (the rescale by the last prime) and the reduction of signed 64-bit
// coefficients into every prime (encoding). One invocation per output word.

struct Limbwise {
    // Words per limb (N).
    n: u32,
    // Output words.
    words: u32,
    // Global prime of the broadcast source limb.
    source_prime: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(3) var<storage, read> limb_prime: array<u32>;
@group(0) @binding(4) var<uniform> shape: Limbwise;
// permute: the index permutation (N words); scalar kernels: (value, Shoup
// quotient) per limb.
@group(0) @binding(5) var<storage, read> table: array<u32>;

fn word(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// a[limb][k] = b[limb][perm[k]].
@compute @workgroup_size(256)
fn permute(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let limb = i / shape.n;
    a[i] = b[limb * shape.n + table[i % shape.n]];
}

// a[limb][k] *= c[limb].
@compute @workgroup_size(256)
fn mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let limb = i / shape.n;
    let p = primes[limb_prime[limb]];
    a[i] = mul_shoup(a[i], table[2u * limb], table[2u * limb + 1u], p.q);
}

// a[limb][k] = (a - b) * c[limb].
@compute @workgroup_size(256)
fn sub_mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let limb = i / shape.n;
    let p = primes[limb_prime[limb]];
    a[i] = mul_shoup(sub_mod(a[i], b[i], p.q), table[2u * limb], table[2u * limb + 1u], p.q);
}

// a[limb][k] = centred(b[k]) mod q_limb, b one limb over source_prime.
@compute @workgroup_size(256)
fn broadcast_centered(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    let s = primes[shape.source_prime].q;
    let x = b[i % shape.n];
    var r = x % p.q;
    if x > s / 2u {
        r = sub_mod(r, s % p.q, p.q);
    }
    a[i] = r;
}

// a[limb][k] = v mod q_limb, canonical, for the signed 64-bit coefficient
// v = b[2k] + 2^32 b[2k + 1] (two's complement, |v| < 2^63): |v| is reduced
// as hi * (2^32 mod q) + lo, both Shoup products, then negated for v < 0,
// the same residue as the CPU's `Modulus::reduce_i64`.
@compute @workgroup_size(256)
fn reduce_signed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    let k = i % shape.n;
    var lo = b[2u * k];
    var hi = b[2u * k + 1u];
    let negative = (hi & 0x80000000u) != 0u;
    if negative {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    let high = mul_shoup(hi, p.two32, p.two32_shoup, p.q);
    let low = mul_shoup(lo, 1u, p.one_shoup, p.q);
    let r = add_mod(high, low, p.q);
    a[i] = select(r, sub_mod(0u, r, p.q), negative);
}
