// GroupNorm, then swish when asked: one workgroup per (group, image). The
// group's channels are contiguous (NCHW), `count` = channels_per_group * hw
// values. Two passes over the group in f32 (the sum for the mean, then the
// sum of squared deviations), each reduced by a tree in workgroup memory;
// then y = (x - mean) / sqrt(var + eps) * gamma[ch] + beta[ch].

struct Norm {
    channels: u32,
    hw: u32,
    per_group: u32,
    swish: u32,
    in_off: u32,
    out_off: u32,
    eps: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
// gamma (channels values), then beta (channels values).
@group(0) @binding(2) var<storage, read> affine: array<f32>;
@group(0) @binding(3) var<uniform> p: Norm;

var<workgroup> partial: array<f32, 256>;

// The sum of every invocation's `v`; called in uniform control flow.
fn workgroup_sum(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let group = wg.x;
    let count = p.per_group * p.hw;
    let start = wg.y * p.channels * p.hw + group * count;
    let src = p.in_off + start;
    var sum = 0.0;
    for (var i = t; i < count; i += 256u) {
        sum += x[src + i];
    }
    let mean = workgroup_sum(t, sum) / f32(count);
    var squares = 0.0;
    for (var i = t; i < count; i += 256u) {
        let d = x[src + i] - mean;
        squares = fma(d, d, squares);
    }
    let inv = 1.0 / sqrt(workgroup_sum(t, squares) / f32(count) + p.eps);
    let dst = p.out_off + start;
    for (var i = t; i < count; i += 256u) {
        let ch = group * p.per_group + i / p.hw;
        let v = (x[src + i] - mean) * (inv * affine[ch]) + affine[p.channels + ch];
        y[dst + i] = select(v, v / (1.0 + exp(-v)), p.swish == 1u);
    }
}
