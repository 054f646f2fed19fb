// Modular arithmetic on u32 words for primes q < 2^31, prepended to every
// kernel file. Every function takes and returns canonical residues
// (0 <= x < q), so results equal the CPU backend's word for word whatever
// the reduction path. WGSL has no 64-bit integers in its portable subset:
// the 32x32 -> 64-bit product `mul_wide` comes from shaders/mul_wide_u32.wgsl
// (16-bit halves) or, where the adapter has SHADER_INT64, from
// shaders/mul_wide_u64.wgsl; both give the same words.

// Per-prime constants, mirrored by `PrimeConsts` on the host.
struct PrimeConsts {
    q: u32,
    // 2^32 mod q and its Shoup quotient floor(two32 * 2^32 / q).
    two32: u32,
    two32_shoup: u32,
    // floor(2^32 / q): the Shoup quotient of 1.
    one_shoup: u32,
    // N^-1 mod q and its Shoup quotient.
    n_inv: u32,
    n_inv_shoup: u32,
    // Offset of this prime's twiddle tables (4 * N words each prime).
    twiddle_offset: u32,
    pad: u32,
}

// x - q if x >= q (x < 2q).
fn reduce_once(x: u32, q: u32) -> u32 {
    return min(x, x - q);
}

fn add_mod(a: u32, b: u32, q: u32) -> u32 {
    return reduce_once(a + b, q);
}

fn sub_mod(a: u32, b: u32, q: u32) -> u32 {
    let d = a - b;
    return min(d, d + q);
}

// a * w mod q with ws = floor(w * 2^32 / q); a may be any u32, w < q.
fn mul_shoup(a: u32, w: u32, ws: u32, q: u32) -> u32 {
    let quotient = mul_wide(a, ws).y;
    return reduce_once(a * w - quotient * q, q);
}

// a * b mod q for any u32 a, b (canonical or not): the 64-bit product
// hi * 2^32 + lo is reduced as hi * (2^32 mod q) + lo * 1, both Shoup
// products, which take any u32 multiplicand.
fn mul_mod(a: u32, b: u32, p: PrimeConsts) -> u32 {
    let x = mul_wide(a, b);
    let high = mul_shoup(x.y, p.two32, p.two32_shoup, p.q);
    let low = mul_shoup(x.x, 1u, p.one_shoup, p.q);
    return add_mod(high, low, p.q);
}
