// Tiled matrix product over a batch of images, the VQGAN's convolutions and
// the two products of attention: for image z of the dispatch,
//
//     c[n][m] = alpha * sum_k A(k, m) B(k, n) + bias[n]     (m < M, n < N)
//
// MODE 0 (convolution as an implicit GEMM): m is an output pixel, n an output
// channel, k = (in_channel, ky, kx); A(k, m) is the input pixel the kernel
// tap reads, zero in the padding, read through a nearest 2x upsampling of
// the stored input when `up` is 1 (the decoder's upsample + conv in one).
// MODE 1 (strided): A(k, m) = a[a_off + z a_bs + k a_ks + m a_ms] (1x1
// convolutions, attention).
//
// One workgroup computes a 64 (m) x 64 (n) tile of c; each of its 256
// invocations a 4 x 4 micro-tile in registers (m = tx + 16 i, n = ty + 16 j, so
// neighbouring invocations read and write neighbouring pixels). The k loop
// stages 16-deep slices of A and B through workgroup memory (8 KiB).

override MODE: u32 = 0u;

struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    // A: element offset, k stride, m stride, image stride (MODE 1; in MODE 0
    // only the offset and image stride are read).
    a_off: u32,
    a_ks: u32,
    a_ms: u32,
    a_bs: u32,
    // B: element offset, k stride, n stride, image stride.
    b_off: u32,
    b_ks: u32,
    b_ns: u32,
    b_bs: u32,
    // c: element offset, n stride (m stride 1), image stride; bias[n] added
    // when has_bias is 1.
    c_off: u32,
    c_ns: u32,
    c_bs: u32,
    has_bias: u32,
    // MODE 0 geometry: the stored input's side, the upsampling shift (0 or
    // 1), the output width, the kernel side, stride, top and left padding.
    in_h: u32,
    in_w: u32,
    up: u32,
    out_w: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: Gemm;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

// [DEPTH][TILE] slices of A and B.
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

fn load_a(z: u32, k: u32, m: u32) -> f32 {
    if k >= p.k || m >= p.m {
        return 0.0;
    }
    let base = p.a_off + z * p.a_bs;
    if MODE == 1u {
        return a[base + k * p.a_ks + m * p.a_ms];
    }
    let taps = p.kernel * p.kernel;
    let ci = k / taps;
    let tap = k - ci * taps;
    let ky = tap / p.kernel;
    let kx = tap - ky * p.kernel;
    let oy = m / p.out_w;
    let ox = m - oy * p.out_w;
    // Position in the (upsampled) input; above or left of it wraps to a
    // large value, which the bounds test rejects like the bottom/right padding.
    let y = oy * p.stride + ky - p.pad_top;
    let x = ox * p.stride + kx - p.pad_left;
    if y >= (p.in_h << p.up) || x >= (p.in_w << p.up) {
        return 0.0;
    }
    return a[base + (ci * p.in_h + (y >> p.up)) * p.in_w + (x >> p.up)];
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    if k >= p.k || n >= p.n {
        return 0.0;
    }
    return b[p.b_off + z * p.b_bs + k * p.b_ks + n * p.b_ns];
}

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let m0 = wg.x * TILE;
    let n0 = wg.y * TILE;
    let z = wg.z;
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += DEPTH) {
        for (var r = 0u; r < 4u; r++) {
            let e = t + 256u * r;
            let kk = e / TILE;
            let col = e % TILE;
            a_tile[e] = load_a(z, k0 + kk, m0 + col);
            b_tile[e] = load_b(z, k0 + kk, n0 + col);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * TILE + tx + 16u * i];
                bv[i] = b_tile[kk * TILE + ty + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let out = p.c_off + z * p.c_bs;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + ty + 16u * j;
        if n >= p.n {
            continue;
        }
        var shift = 0.0;
        if p.has_bias == 1u {
            shift = bias[n];
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + tx + 16u * i;
            if m < p.m {
                c[out + n * p.c_ns + m] = p.alpha * acc[i * 4u + j] + shift;
            }
        }
    }
}
