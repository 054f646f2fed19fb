// Element-wise modular operations over a batch of limbs, limb i over prime
// limb_prime[i], one invocation per output word: out = a (op) b, or
// out += a * b. A ciphertext's two halves lie in one buffer (c0's limbs,
// then c1's), so one dispatch covers both; an operand `b` shorter than `a`
// (a plaintext against a ciphertext) is read again for the second half.

struct Elementwise {
    // Words per limb (N) and its log2.
    n: u32,
    log_n: u32,
    // Output words.
    words: u32,
    // Words of b: word i reads b[i] below b_words, b[i - b_words] above
    // (words <= 2 * b_words).
    b_words: u32,
    // 1: the left operand is out itself (an in-place operation; `a` unread);
    // mul_sum: the sum is added to what out holds.
    in_place: u32,
    // mul_sum: the number of products summed.
    terms: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(4) var<storage, read> limb_prime: array<u32>;
@group(0) @binding(5) var<uniform> shape: Elementwise;
// mul_sum, per term (2 words): the first limb of its ciphertext in `a`,
// the first limb of its plaintext in `b`.
@group(0) @binding(6) var<storage, read> terms: array<u32>;

// Flattened invocation index over a 2D dispatch of 256-wide workgroups.
fn word_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

fn a_at(i: u32) -> u32 {
    if shape.in_place == 1u {
        return out[i];
    }
    return a[i];
}

fn b_at(i: u32) -> u32 {
    return b[select(i, i - shape.b_words, i >= shape.b_words)];
}

fn q_at(i: u32) -> u32 {
    return primes[limb_prime[i >> shape.log_n]].q;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    out[i] = add_mod(a_at(i), b_at(i), q_at(i));
}

@compute @workgroup_size(256)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    out[i] = sub_mod(a_at(i), b_at(i), q_at(i));
}

// out = -a (b unused).
@compute @workgroup_size(256)
fn neg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    out[i] = sub_mod(0u, a_at(i), q_at(i));
}

// out += a (b unused): a term added to a running sum.
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    out[i] = add_mod(out[i], a[i], q_at(i));
}

// Point-wise product (evaluation form).
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i >> shape.log_n]];
    out[i] = mul_mod(a_at(i), b_at(i), p);
}

// out += a * b: a ciphertext-plaintext product accumulated in place.
@compute @workgroup_size(256)
fn mul_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i >> shape.log_n]];
    out[i] = add_mod(out[i], mul_mod(a_at(i), b_at(i), p), p.q);
}

// out (+)= sum_t a_t * b_t: products of ciphertexts and plaintexts summed
// in one pass (the diagonals of a convolution's giant step), each word of
// every operand read once. Term t's ciphertext is the `words` words of `a`
// from limb terms[2t], its plaintext the `b_words` words of `b` from limb
// terms[2t + 1], read again for the second half.
@compute @workgroup_size(256)
fn mul_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = word_index(gid, groups);
    if i >= shape.words {
        return;
    }
    let p = primes[limb_prime[i >> shape.log_n]];
    let j = select(i, i - shape.b_words, i >= shape.b_words);
    var sum = 0u;
    if shape.in_place == 1u {
        sum = out[i];
    }
    for (var t = 0u; t < shape.terms; t += 1u) {
        let x = a[(terms[2u * t] << shape.log_n) + i];
        let y = b[(terms[2u * t + 1u] << shape.log_n) + j];
        sum = add_mod(sum, mul_mod(x, y, p), p.q);
    }
    out[i] = sum;
}
