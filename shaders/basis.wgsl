// Fast basis extension (ModUp, ModDown) on coefficient-form limbs:
//   y_i = [x_i * qhat_i^-1]_{s_i},   out_t = sum_i y_i * (Q_S / s_i mod t)  (mod t)
// and, when centred, minus v * (Q_S mod t) with v = round(sum_i y_i / s_i)
// estimated in 64-bit fixed point exactly as ring::basis::BasisConverter:
// floor(y_i * floor(2^64 / s_i) / 2^32), summed, rounded at 2^32.
// One invocation per (coefficient, target limb).

struct Convert {
    n: u32,
    sources: u32,
    targets: u32,
    centered: u32,
}

@group(0) @binding(0) var<storage, read> input: array<u32>;
@group(0) @binding(1) var<storage, read_write> output: array<u32>;
@group(0) @binding(2) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(3) var<storage, read> source_prime: array<u32>;
@group(0) @binding(4) var<storage, read> target_prime: array<u32>;
// Per source i: qhat_inv, its Shoup quotient, reciprocal high, low (4 words);
// then per target t: Q_S / s_i mod t for every source, then Q_S mod t.
@group(0) @binding(5) var<storage, read> tables: array<u32>;
@group(0) @binding(6) var<uniform> shape: Convert;

@compute @workgroup_size(256)
fn convert(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let t = gid.y;
    if k >= shape.n || t >= shape.targets {
        return;
    }
    let dst = primes[target_prime[t]];
    let row = 4u * shape.sources + t * (shape.sources + 1u);
    var acc = 0u;
    var frac_lo = 0u;
    var frac_hi = 0u;
    for (var i = 0u; i < shape.sources; i += 1u) {
        let src = primes[source_prime[i]];
        let y = mul_shoup(input[i * shape.n + k], tables[4u * i], tables[4u * i + 1u], src.q);
        acc = add_mod(acc, mul_mod(y % dst.q, tables[row + i], dst), dst.q);
        if shape.centered == 1u {
            // floor(y * recip / 2^32) = y * recip_hi + high word of y * recip_lo.
            let part = y * tables[4u * i + 2u] + mul_wide(y, tables[4u * i + 3u]).y;
            let sum = frac_lo + part;
            frac_hi += select(0u, 1u, sum < frac_lo);
            frac_lo = sum;
        }
    }
    if shape.centered == 1u {
        let rounded = frac_lo + 0x80000000u;
        let v = frac_hi + select(0u, 1u, rounded < frac_lo);
        let qs = tables[row + shape.sources];
        acc = sub_mod(acc, mul_mod(v % dst.q, qs, dst), dst.q);
    }
    output[t * shape.n + k] = acc;
}
