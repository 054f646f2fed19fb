// The VQGAN's memory-bound kernels: in-place add, nearest 2x upsampling and
// the column softmax of attention's score blocks.

struct Elementwise {
    // add, upsample: values written; softmax: columns (queries) per image.
    count: u32,
    // Element offsets of the two bindings.
    a_off: u32,
    b_off: u32,
    // upsample: the stored (input) side.
    h: u32,
    w: u32,
    // softmax: rows (keys) per image and the image stride.
    rows: u32,
    batch: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Elementwise;

// Flattened invocation index over a 2D dispatch of 256-wide workgroups.
fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// a += b.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if i < p.count {
        a[p.a_off + i] += b[p.b_off + i];
    }
}

// a (planes of 2h x 2w) = nearest 2x upsampling of b (planes of h x w).
@compute @workgroup_size(256)
fn upsample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if i >= p.count {
        return;
    }
    let wide = 2u * p.w;
    let plane = i / (2u * p.h * wide);
    let r = i - plane * (2u * p.h * wide);
    let oy = r / wide;
    let ox = r - oy * wide;
    a[p.a_off + i] = b[p.b_off + (plane * p.h + oy / 2u) * p.w + ox / 2u];
}

// Softmax down each column of a (rows x count per image, image z at
// a_off + z * batch): one invocation per column, dispatch y = image.
@compute @workgroup_size(256)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if col >= p.count {
        return;
    }
    let base = p.a_off + gid.y * p.batch + col;
    var top = a[base];
    for (var r = 1u; r < p.rows; r++) {
        top = max(top, a[base + r * p.count]);
    }
    var sum = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let e = exp(a[base + r * p.count] - top);
        a[base + r * p.count] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var r = 0u; r < p.rows; r++) {
        a[base + r * p.count] *= inv;
    }
}
