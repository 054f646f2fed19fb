// Element-wise modular operations over a batch of limbs: a = a (op) b, or
// a += b * c, limb i over prime limb_prime[i]. One invocation per word.

struct Elementwise {
    // Words per limb (N).
    n: u32,
    // Total words in the batch.
    words: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(3) var<storage, read> limb_prime: array<u32>;
@group(0) @binding(4) var<uniform> shape: Elementwise;
// The second factor of `mul_add` (unused by the others).
@group(0) @binding(5) var<storage, read> c: array<u32>;

// Flattened invocation index over a 2D dispatch of 256-wide workgroups.
fn word_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    a[i] = add_mod(a[i], b[i], p.q);
}

@compute @workgroup_size(256)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    a[i] = sub_mod(a[i], b[i], p.q);
}

@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    a[i] = mul_mod(a[i], b[i], p);
}

// a += b * c: a ciphertext-plaintext product accumulated in place.
@compute @workgroup_size(256)
fn mul_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i / shape.n]];
    a[i] = add_mod(a[i], mul_mod(b[i], c[i], p), p.q);
}
