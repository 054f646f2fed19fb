// Fast basis extension (ModUp, ModDown) of coefficient-form limbs, one
// output word at a time, prepended to the kernels that use it
// (shaders/basis.wgsl, shaders/ntt.wgsl). For a row with sources s_i:
//   y_i = [x_i * qhat_i^-1]_{s_i},   out = sum_i y_i * (Q_S / s_i mod t)  (mod t)
// and, when centred, minus v * (Q_S mod t) with v = round(sum_i y_i / s_i)
// estimated in 64-bit fixed point exactly as ring::basis::BasisConverter:
// floor(y_i * floor(2^64 / s_i) / 2^32), summed, rounded at 2^32.
// `mul_mod` takes any u32 factor, so y_i needs no reduction into t.
//
// The including file defines conv_log_n() (log2 N) and `primes`.
//
// conv_tables holds, from word 0, one 8-word row per output limb:
//   source limb in conv_input of the first source, source count, offset of
//   the sources' entries, offset of the target's entries, output limb,
//   target prime, centred (0/1), unused;
// per source (5 words): global prime, qhat_inv, its Shoup quotient,
//   reciprocal high, low;
// per target: Q_S / s_i mod t for every source, then Q_S mod t.

@group(0) @binding(6) var<storage, read> conv_input: array<u32>;
@group(0) @binding(7) var<storage, read> conv_tables: array<u32>;

fn convert_value(row: u32, k: u32) -> u32 {
    let r = 8u * row;
    let first = conv_tables[r];
    let count = conv_tables[r + 1u];
    let sources = conv_tables[r + 2u];
    let tgt = conv_tables[r + 3u];
    let dst = primes[conv_tables[r + 5u]];
    let centered = conv_tables[r + 6u] == 1u;
    var acc = 0u;
    var frac_lo = 0u;
    var frac_hi = 0u;
    for (var i = 0u; i < count; i += 1u) {
        let e = sources + 5u * i;
        let src = primes[conv_tables[e]];
        let x = conv_input[((first + i) << conv_log_n()) + k];
        let y = mul_shoup(x, conv_tables[e + 1u], conv_tables[e + 2u], src.q);
        acc = add_mod(acc, mul_mod(y, conv_tables[tgt + i], dst), dst.q);
        if centered {
            // floor(y * recip / 2^32) = y * recip_hi + high word of y * recip_lo.
            let part = y * conv_tables[e + 3u] + mul_wide(y, conv_tables[e + 4u]).y;
            let sum = frac_lo + part;
            frac_hi += select(0u, 1u, sum < frac_lo);
            frac_lo = sum;
        }
    }
    if centered {
        let rounded = frac_lo + 0x80000000u;
        let v = frac_hi + select(0u, 1u, rounded < frac_lo);
        acc = sub_mod(acc, mul_mod(v, conv_tables[tgt + count], dst), dst.q);
    }
    return acc;
}
