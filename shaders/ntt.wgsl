// Negacyclic NTT passes over a batch of limbs named by a table: slot s of
// the dispatch (workgroup row limb_base + wid.y) transforms the limb at
// position `limbs[4s + 1]` of `data` over global prime `limbs[4s]`, so the
// limbs of one dispatch may lie anywhere in the buffer (the special limbs of
// both halves of a key-switching sum, say) and belong to any primes. A pass
// loads a tile of up to TILE words into workgroup memory, runs every
// butterfly stage whose pair distance is 2^b for b in [bit_lo, bit_hi], and
// writes the tile back; the host splits the log2(N) stages into as few
// passes as the tile allows (two at N = 2^16).
// Forward: Cooley-Tukey, high bits first, twiddle psi_rev[N / 2^(b+1) +
// (e >> (b+1))]. Inverse: Gentleman-Sande, low bits first, twiddle
// psi_inv_rev[N / 2^(b+1) + (e >> (b+1))], then N^-1 in the pass that holds
// the last stage. Same transform, word for word, as math::ntt on the CPU.
// The first pass of a transform may load its tile from elsewhere instead of
// `data`: `*_from` entry points read limb `limbs[4s + 2]` of `source` (an
// out-of-place transform, the input left as it was); `forward_converted`
// computes each word as a basis conversion (shaders/convert.wgsl, row
// `limbs[4s + 2]`), so ModUp and ModDown write their converted limbs
// straight into the transform; `forward_broadcast` takes the centred value
// of limb `limbs[4s + 2]` of `source`, over the prime `source_prime` (a
// rescale's last limb, broadcast to the primes below it).
// The last pass of a forward transform may, instead of storing its words
// into `data`, finish the operation they feed (the `*_finish` entry points,
// see `finish` below): ModDown's and rescale's subtraction and scaling, and
// what the operation adds, written straight to the result.
// The first pass of an inverse transform may also compute its tile instead
// of loading it: `inverse_product` is the key switch's inner product
// (shaders/keyswitch.wgsl, prepended to this file) with the first pass of
// its special limbs' inverse transform, `inverse_tensor` the tensor product
// of two ciphertexts with the first pass of d2's.
// The twiddle tables of all primes may exceed one storage binding (n17): the
// host binds one chunk of primes at a time and dispatches the limbs over it.

const TILE: u32 = 4096u;
const WORKGROUP: u32 = 256u;

struct NttPass {
    log_n: u32,
    bit_lo: u32,
    bit_hi: u32,
    // 1: multiply every word by N^-1 before storing (inverse, last pass).
    scale: u32,
    // Words per workgroup: min(N, TILE).
    tile_words: u32,
    // First table slot of this dispatch (limbs whose primes share a twiddle buffer).
    limb_base: u32,
    // log2(tile_words): every split of a local index is a shift and a mask.
    tile_log: u32,
    // Global prime of the broadcast source limb (forward_broadcast).
    source_prime: u32,
}

@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<storage, read> primes: array<PrimeConsts>;
// Per slot: global prime, position in `data`, position in `source` (or
// conversion row), unused.
@group(0) @binding(2) var<storage, read> limbs: array<u32>;
@group(0) @binding(3) var<storage, read> twiddles: array<u32>;
@group(0) @binding(4) var<uniform> pass_info: NttPass;
@group(0) @binding(5) var<storage, read> source: array<u32>;

// The finishing store: per slot an 8-word row as in shaders/limbwise.wgsl
// (prime, constant, its Shoup quotient, limb of fin_a, unused, limb of
// fin_c, mode, unused); the slot's `data` position is the limb of fin_out
// it writes: fin_out = (fin_a - word) * constant + extra, extra by mode:
// 0 nothing, 1 fin_out's own word, 2 fin_c's word, 3 fin_c's word at perm[k].
@group(0) @binding(8) var<storage, read_write> fin_out: array<u32>;
@group(0) @binding(9) var<storage, read> fin_a: array<u32>;
@group(0) @binding(10) var<storage, read> fin_c: array<u32>;
@group(0) @binding(11) var<storage, read> fin_perm: array<u32>;
@group(0) @binding(12) var<storage, read> fin_rows: array<u32>;

// inverse_tensor: the second ciphertext (the first is `source`) and the
// three halves of the product, d0, d1, d2.
@group(0) @binding(21) var<storage, read> tensor_b: array<u32>;
@group(0) @binding(22) var<storage, read_write> tensor_out: array<u32>;

var<workgroup> tile: array<u32, TILE>;

fn conv_log_n() -> u32 {
    return pass_info.log_n;
}

// log2 of the butterfly groups in a tile: the tile's bits not transformed here.
fn group_log() -> u32 {
    return pass_info.tile_log - (pass_info.bit_hi - pass_info.bit_lo + 1u);
}

// Global index, within its limb, of local word l of workgroup wg.
fn element_index(l: u32, wg: u32) -> u32 {
    let gl = group_log();
    let g = l & ((1u << gl) - 1u);
    let f = l >> gl;
    let group_id = (wg << gl) | g;
    let low = group_id & ((1u << pass_info.bit_lo) - 1u);
    let high = group_id >> pass_info.bit_lo;
    return (high << (pass_info.bit_hi + 1u)) | (f << pass_info.bit_lo) | low;
}

// Local indices (x, y) of butterfly k at bit b: the two words whose free
// index differs in bit b - bit_lo.
fn butterfly_pair(k: u32, b: u32) -> vec2<u32> {
    let gl = group_log();
    let g = k & ((1u << gl) - 1u);
    let fk = k >> gl;
    let fb = b - pass_info.bit_lo;
    let fx = ((fk >> fb) << (fb + 1u)) | (fk & ((1u << fb) - 1u));
    let fy = fx | (1u << fb);
    return vec2<u32>((fx << gl) | g, (fy << gl) | g);
}

struct Slot {
    p: PrimeConsts,
    // First word of the limb in `data`.
    base: u32,
    // Position in `source`, or conversion row.
    src_pos: u32,
}

fn slot(wid: vec3<u32>) -> Slot {
    let s = 4u * (pass_info.limb_base + wid.y);
    let n = 1u << pass_info.log_n;
    return Slot(primes[limbs[s]], limbs[s + 1u] * n, limbs[s + 2u]);
}

fn load_tile(local: u32, wg: u32, base: u32) {
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        tile[l] = data[base + element_index(l, wg)];
    }
    workgroupBarrier();
}

fn load_tile_from_source(local: u32, wg: u32, base: u32) {
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        tile[l] = source[base + element_index(l, wg)];
    }
    workgroupBarrier();
}

fn load_tile_converted(local: u32, wg: u32, row: u32) {
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        tile[l] = convert_value(row, element_index(l, wg));
    }
    workgroupBarrier();
}

fn load_tile_broadcast(local: u32, wg: u32, from_base: u32, p: PrimeConsts) {
    let s = primes[pass_info.source_prime].q;
    // Words and s are below 2^31: one Shoup product by 1 reduces any u32.
    let s_mod = mul_shoup(s, 1u, p.one_shoup, p.q);
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        let x = source[from_base + element_index(l, wg)];
        var v = mul_shoup(x, 1u, p.one_shoup, p.q);
        if x > s / 2u {
            v = sub_mod(v, s_mod, p.q);
        }
        tile[l] = v;
    }
    workgroupBarrier();
}

fn store_tile_finish(local: u32, wg: u32, base: u32, slot_index: u32, p: PrimeConsts) {
    workgroupBarrier();
    let r = 8u * slot_index;
    let value = fin_rows[r + 1u];
    let shoup = fin_rows[r + 2u];
    let a_base = fin_rows[r + 3u] << pass_info.log_n;
    let c_base = fin_rows[r + 5u] << pass_info.log_n;
    let mode = fin_rows[r + 6u];
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        let e = element_index(l, wg);
        var v = mul_shoup(sub_mod(fin_a[a_base + e], tile[l], p.q), value, shoup, p.q);
        switch mode {
            case 1u: {
                v = add_mod(v, fin_out[base + e], p.q);
            }
            case 2u: {
                v = add_mod(v, fin_c[c_base + e], p.q);
            }
            case 3u: {
                v = add_mod(v, fin_c[c_base + fin_perm[e]], p.q);
            }
            default: {}
        }
        fin_out[base + e] = v;
    }
}

fn store_tile(local: u32, wg: u32, base: u32, p: PrimeConsts) {
    workgroupBarrier();
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        var v = tile[l];
        if pass_info.scale == 1u {
            v = mul_shoup(v, p.n_inv, p.n_inv_shoup, p.q);
        }
        data[base + element_index(l, wg)] = v;
    }
}

fn forward_stages(local: u32, wg: u32, p: PrimeConsts) {
    let n = 1u << pass_info.log_n;
    let half_tile = pass_info.tile_words / 2u;
    var b = pass_info.bit_hi + 1u;
    loop {
        if b == pass_info.bit_lo {
            break;
        }
        b -= 1u;
        let m = n >> (b + 1u);
        for (var k = local; k < half_tile; k += WORKGROUP) {
            let xy = butterfly_pair(k, b);
            let e = element_index(xy.x, wg);
            let t = p.twiddle_offset + m + (e >> (b + 1u));
            let w = twiddles[t];
            let ws = twiddles[t + n];
            let u = tile[xy.x];
            let v = mul_shoup(tile[xy.y], w, ws, p.q);
            tile[xy.x] = add_mod(u, v, p.q);
            tile[xy.y] = sub_mod(u, v, p.q);
        }
        workgroupBarrier();
    }
}

fn inverse_stages(local: u32, wg: u32, p: PrimeConsts) {
    let n = 1u << pass_info.log_n;
    let half_tile = pass_info.tile_words / 2u;
    for (var b = pass_info.bit_lo; b <= pass_info.bit_hi; b += 1u) {
        let m = n >> (b + 1u);
        for (var k = local; k < half_tile; k += WORKGROUP) {
            let xy = butterfly_pair(k, b);
            let e = element_index(xy.x, wg);
            let t = p.twiddle_offset + 2u * n + m + (e >> (b + 1u));
            let w = twiddles[t];
            let ws = twiddles[t + n];
            let u = tile[xy.x];
            let v = tile[xy.y];
            tile[xy.x] = add_mod(u, v, p.q);
            tile[xy.y] = mul_shoup(sub_mod(u, v, p.q), w, ws, p.q);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile(local, wid.x, s.base);
    forward_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

@compute @workgroup_size(256)
fn forward_from(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_from_source(local, wid.x, s.src_pos << pass_info.log_n);
    forward_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

@compute @workgroup_size(256)
fn forward_converted(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_converted(local, wid.x, s.src_pos);
    forward_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

@compute @workgroup_size(256)
fn forward_broadcast(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_broadcast(local, wid.x, s.src_pos << pass_info.log_n, s.p);
    forward_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

@compute @workgroup_size(256)
fn forward_finish(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile(local, wid.x, s.base);
    forward_stages(local, wid.x, s.p);
    store_tile_finish(local, wid.x, s.base, pass_info.limb_base + wid.y, s.p);
}

@compute @workgroup_size(256)
fn forward_converted_finish(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_converted(local, wid.x, s.src_pos);
    forward_stages(local, wid.x, s.p);
    store_tile_finish(local, wid.x, s.base, pass_info.limb_base + wid.y, s.p);
}

@compute @workgroup_size(256)
fn forward_broadcast_finish(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_broadcast(local, wid.x, s.src_pos << pass_info.log_n, s.p);
    forward_stages(local, wid.x, s.p);
    store_tile_finish(local, wid.x, s.base, pass_info.limb_base + wid.y, s.p);
}

@compute @workgroup_size(256)
fn inverse(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile(local, wid.x, s.base);
    inverse_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

@compute @workgroup_size(256)
fn inverse_from(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    load_tile_from_source(local, wid.x, s.src_pos << pass_info.log_n);
    inverse_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

// The inner product of a key switch with the first inverse pass of its
// special limbs. Slot s computes ext limb `limbs[4s + 2]` of the sums
// (ks_shape.limbs limbs per half, b's then a's, in `data`); `limbs[4s + 3]`
// says how: 0 both halves of a limb over Q, stored point-wise; 1 (b) or 2
// (a) one half of a special limb, computed into the tile, transformed by
// this pass and stored at position `limbs[4s + 1]`. With
// ks_shape.accumulate the sums are added to what `data` holds.
@compute @workgroup_size(256)
fn inverse_product(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    let half = limbs[4u * (pass_info.limb_base + wid.y) + 3u];
    let limb = s.src_pos;
    let add = ks_shape.accumulate == 1u;
    if half == 0u {
        for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
            let e = element_index(l, wid.x);
            let ib = (limb << pass_info.log_n) + e;
            let ia = ((ks_shape.limbs + limb) << pass_info.log_n) + e;
            var start = vec2<u32>(0u, 0u);
            if add {
                start = vec2<u32>(data[ib], data[ia]);
            }
            let sums = digit_sums(e, limb, start);
            data[ib] = sums.x;
            data[ia] = sums.y;
        }
        return;
    }
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        let e = element_index(l, wid.x);
        var old = 0u;
        if add {
            old = data[s.base + e];
        }
        let sums = digit_sums(e, limb, vec2<u32>(old, old));
        tile[l] = select(sums.y, sums.x, half == 1u);
    }
    workgroupBarrier();
    inverse_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}

// The tensor product of ciphertexts a (`source`) and b (`tensor_b`), each
// two halves of `limbs[4s + 3]` limbs, with the first inverse pass of d2:
// slot s writes limb i = `limbs[4s + 2]` of d0 = a0 b0, d1 = a0 b1 + a1 b0
// and d2 = a1 b1 to `tensor_out` (three halves, evaluation form) and d2's
// tile, transformed by this pass, to limb `limbs[4s + 1]` of `data`.
@compute @workgroup_size(256)
fn inverse_tensor(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = slot(wid);
    let h = limbs[4u * (pass_info.limb_base + wid.y) + 3u] << pass_info.log_n;
    let base = s.src_pos << pass_info.log_n;
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        let i = base + element_index(l, wid.x);
        let a0 = source[i];
        let a1 = source[h + i];
        let b0 = tensor_b[i];
        let b1 = tensor_b[h + i];
        let d2 = mul_mod(a1, b1, s.p);
        tensor_out[i] = mul_mod(a0, b0, s.p);
        tensor_out[h + i] = add_mod(mul_mod(a0, b1, s.p), mul_mod(a1, b0, s.p), s.p.q);
        tensor_out[2u * h + i] = d2;
        tile[l] = d2;
    }
    workgroupBarrier();
    inverse_stages(local, wid.x, s.p);
    store_tile(local, wid.x, s.base, s.p);
}
