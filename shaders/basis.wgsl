// Fast basis extension into coefficient form (shaders/convert.wgsl): one
// invocation per (coefficient, conversion row); row r writes limb
// conv_tables[8r + 4] of `output`. The key switch fuses the same conversion
// into the first pass of its NTT instead (shaders/ntt.wgsl).

struct Convert {
    n: u32,
    log_n: u32,
    rows: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> output: array<u32>;
@group(0) @binding(1) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(2) var<uniform> shape: Convert;

fn conv_log_n() -> u32 {
    return shape.log_n;
}

@compute @workgroup_size(256)
fn convert(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let row = gid.y;
    if k >= shape.n || row >= shape.rows {
        return;
    }
    output[(conv_tables[8u * row + 4u] << shape.log_n) + k] = convert_value(row, k);
}
