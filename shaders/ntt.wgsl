// Negacyclic NTT passes over a batch of limbs (several polynomials may share
// one batch: each limb names its prime). A pass loads a tile of up to TILE
// words into workgroup memory, runs every butterfly stage whose pair distance
// is 2^b for b in [bit_lo, bit_hi], and writes the tile back; the host splits
// the log2(N) stages into as few passes as the tile allows (two at N = 2^16).
// Forward: Cooley-Tukey, high bits first, twiddle psi_rev[N / 2^(b+1) +
// (e >> (b+1))]. Inverse: Gentleman-Sande, low bits first, twiddle
// psi_inv_rev[N / 2^(b+1) + (e >> (b+1))], then N^-1 in the pass that holds
// the last stage. Same transform, word for word, as math::ntt on the CPU.
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
    // First limb of this dispatch (limbs whose primes share a twiddle buffer).
    limb_base: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<storage, read> primes: array<PrimeConsts>;
@group(0) @binding(2) var<storage, read> limb_prime: array<u32>;
@group(0) @binding(3) var<storage, read> twiddles: array<u32>;
@group(0) @binding(4) var<uniform> pass_info: NttPass;

var<workgroup> tile: array<u32, TILE>;

// Global index, within its limb, of local word l of workgroup wg.
fn element_index(l: u32, wg: u32) -> u32 {
    let free_bits = pass_info.bit_hi - pass_info.bit_lo + 1u;
    let groups = pass_info.tile_words >> free_bits;
    let g = l % groups;
    let f = l / groups;
    let group_id = wg * groups + g;
    let low = group_id & ((1u << pass_info.bit_lo) - 1u);
    let high = group_id >> pass_info.bit_lo;
    return (high << (pass_info.bit_hi + 1u)) | (f << pass_info.bit_lo) | low;
}

// Local indices (x, y) of butterfly k at bit b: the two words whose free
// index differs in bit b - bit_lo.
fn butterfly_pair(k: u32, b: u32) -> vec2<u32> {
    let free_bits = pass_info.bit_hi - pass_info.bit_lo + 1u;
    let groups = pass_info.tile_words >> free_bits;
    let g = k % groups;
    let fk = k / groups;
    let fb = b - pass_info.bit_lo;
    let fx = ((fk >> fb) << (fb + 1u)) | (fk & ((1u << fb) - 1u));
    let fy = fx | (1u << fb);
    return vec2<u32>(fx * groups + g, fy * groups + g);
}

fn load_tile(local: u32, wg: u32, base: u32) {
    for (var l = local; l < pass_info.tile_words; l += WORKGROUP) {
        tile[l] = data[base + element_index(l, wg)];
    }
    workgroupBarrier();
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

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = 1u << pass_info.log_n;
    let limb = pass_info.limb_base + wid.y;
    let p = primes[limb_prime[limb]];
    let base = limb * n;
    load_tile(local, wid.x, base);
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
            let e = element_index(xy.x, wid.x);
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
    store_tile(local, wid.x, base, p);
}

@compute @workgroup_size(256)
fn inverse(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = 1u << pass_info.log_n;
    let limb = pass_info.limb_base + wid.y;
    let p = primes[limb_prime[limb]];
    let base = limb * n;
    load_tile(local, wid.x, base);
    let half_tile = pass_info.tile_words / 2u;
    for (var b = pass_info.bit_lo; b <= pass_info.bit_hi; b += 1u) {
        let m = n >> (b + 1u);
        for (var k = local; k < half_tile; k += WORKGROUP) {
            let xy = butterfly_pair(k, b);
            let e = element_index(xy.x, wid.x);
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
    store_tile(local, wid.x, base, p);
}
