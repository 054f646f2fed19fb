// The SHADER_INT64 fast path: (low, high) words of a * b through one 64-bit
// multiply. Only compiled where the device has the feature.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let p = u64(a) * u64(b);
    return vec2<u32>(u32(p & 0xfffffffflu), u32(p >> 32u));
}
