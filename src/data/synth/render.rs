//! Drawing one synthetic radiograph: a density map of the chest (soft tissue,
//! bones, air in the lungs, heart, the signs of the findings) in anatomy
//! coordinates, seen through a per-image pose, then an exposure curve and
//! quantum noise.
//!
//! Anatomy coordinates: the unit is the image side, `x` runs to the image's
//! right (the patient's left, as a PA film is read), `y` downwards, the
//! midline is `x = 0.5`. Side 0 is the patient's right (image left), side 1
//! the patient's left; `u = |x - 0.5|` is the distance from the midline.

use super::{stream_rng, Finding, ImageRecord, Sex, Stream, View};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

/// An 8-bit grey square image.
///
/// Invariant: `pixels.len() == size * size`, row-major, top row first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrayImage {
    size: u32,
    pixels: Vec<u8>,
}

impl GrayImage {
    /// Side in pixels.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The `size * size` grey levels, row-major, top row first.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
}

// Densities (brightness before the exposure curve) of the tissues.
/// Soft tissue at the thickest part of the body.
const BODY: f32 = 0.72;
/// Air in the middle of a normal lung (subtracted).
const AIR: f32 = 0.52;
/// Bone of a rib, a clavicle, the spine.
const RIB: f32 = 0.075;
/// Vessels (lung markings) at the hilum.
const MARKING: f32 = 0.14;

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// `exp(-t^2)`, exactly 0 far out (no slow underflow path).
fn gauss(t: f32) -> f32 {
    if t.abs() < 4.0 {
        (-t * t).exp()
    } else {
        0.0
    }
}

/// Euclidean length (`f32::hypot` guards against overflow we cannot have,
/// at several times the cost).
fn length(dx: f32, dy: f32) -> f32 {
    (dx * dx + dy * dy).sqrt()
}

/// `1` on the crest of a noise value at 0.5, `0` at 0 and 1: thin lines.
fn ridge(n: f32) -> f32 {
    1.0 - (2.0 * n - 1.0).abs()
}

fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    rng.gen_range(lo..hi)
}

/// Periodic value noise on a `N x N` lattice (smooth, values in 0..1).
struct ValueNoise {
    values: Vec<f32>,
}

impl ValueNoise {
    const N: usize = 64;

    fn new(rng: &mut ChaCha8Rng) -> ValueNoise {
        ValueNoise {
            values: (0..Self::N * Self::N).map(|_| rng.gen::<f32>()).collect(),
        }
    }

    /// The noise at lattice coordinates (`x`, `y`), any real values.
    fn at(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (tx, ty) = (x - fx, y - fy);
        let (tx, ty) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let n = Self::N as i64;
        let ix = (fx as i64).rem_euclid(n) as usize;
        let iy = (fy as i64).rem_euclid(n) as usize;
        let (ix1, iy1) = ((ix + 1) % Self::N, (iy + 1) % Self::N);
        let v = |i: usize, j: usize| self.values[j * Self::N + i];
        let top = v(ix, iy) + (v(ix1, iy) - v(ix, iy)) * tx;
        let bottom = v(ix, iy1) + (v(ix1, iy1) - v(ix, iy1)) * tx;
        top + (bottom - top) * ty
    }
}

/// A rotated ellipse.
#[derive(Clone, Copy, Debug)]
struct Ellipse {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    cos: f32,
    sin: f32,
}

impl Ellipse {
    fn new(cx: f32, cy: f32, rx: f32, ry: f32, angle: f32) -> Ellipse {
        Ellipse {
            cx,
            cy,
            rx,
            ry,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Normalised radius of (`x`, `y`): below 1 inside.
    fn rho(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let a = (dx * self.cos + dy * self.sin) / self.rx;
        let b = (dy * self.cos - dx * self.sin) / self.ry;
        (a * a + b * b).sqrt()
    }

    /// 1 inside, 0 outside, a ramp of half-width `soft` (in normalised radius).
    fn mask(&self, x: f32, y: f32, soft: f32) -> f32 {
        smoothstep(1.0 + soft, 1.0 - soft, self.rho(x, y))
    }
}

/// Distance from (`x`, `y`) to the segment `a`-`b`.
fn segment_distance(x: f32, y: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((x - a.0) * dx + (y - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    length(x - a.0 - t * dx, y - a.1 - t * dy)
}

/// Branching vessel trees drawn once into an `N x N` raster over the
/// anatomy square, sampled bilinearly (values in 0..1).
struct TreeMap {
    values: Vec<f32>,
}

impl TreeMap {
    const N: usize = 256;

    /// Trees growing from each hilum into its lung: trunks in a fan that
    /// wander, fork and thin out.
    fn new(rng: &mut ChaCha8Rng, lungs: &[Lung; 2]) -> TreeMap {
        let mut map = TreeMap {
            values: vec![0.0; Self::N * Self::N],
        };
        for (side, lung) in lungs.iter().enumerate() {
            let sign = if side == 0 { -1.0 } else { 1.0 };
            let root = (0.5 + sign * lung.hilum_u, lung.hilum_y);
            let trunks = rng.gen_range(7..=9);
            for i in 0..trunks {
                // Angles from up-medial over lateral to down (y grows downwards).
                let a = -1.9 + 3.4 * (i as f32 + uniform(rng, 0.2, 0.8)) / trunks as f32;
                let dir = (sign * a.cos(), a.sin());
                map.grow(rng, root, dir, 0.0055, 0.16 + 0.1 * a.sin().abs(), 3);
            }
        }
        map
    }

    /// One branch from `start` along `dir` of half width `width` and length
    /// `length`, forking up to `depth` more times.
    fn grow(&mut self, rng: &mut ChaCha8Rng, start: (f32, f32), dir: (f32, f32), width: f32, length: f32, depth: u32) {
        const STEP: f32 = 0.012;
        let (mut p, mut a) = (start, dir.1.atan2(dir.0));
        let steps = (length / STEP) as usize;
        for k in 0..steps {
            a += uniform(rng, -0.25, 0.25);
            let next = (p.0 + STEP * a.cos(), p.1 + STEP * a.sin());
            let w = width * (1.0 - 0.5 * k as f32 / steps as f32);
            self.stamp(p, next, w);
            p = next;
            if depth > 0 && k > 1 && rng.gen_bool(0.18) {
                let turn = uniform(rng, 0.35, 0.7) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                let rest = length * (1.0 - k as f32 / steps as f32);
                self.grow(
                    rng,
                    p,
                    ((a + turn).cos(), (a + turn).sin()),
                    w * 0.7,
                    rest * 0.8,
                    depth - 1,
                );
            }
        }
    }

    /// Draws the segment `a`-`b` of half width `w` (keeps the brighter value).
    fn stamp(&mut self, a: (f32, f32), b: (f32, f32), w: f32) {
        let n = Self::N as f32;
        let cell = |v: f32| ((v * n - 0.5).clamp(0.0, n - 1.0)) as usize;
        let (x0, x1) = (cell(a.0.min(b.0) - 2.0 * w), cell(a.0.max(b.0) + 2.0 * w));
        let (y0, y1) = (cell(a.1.min(b.1) - 2.0 * w), cell(a.1.max(b.1) + 2.0 * w));
        let soft = w.max(1.0 / n);
        for j in y0..=y1 {
            for i in x0..=x1 {
                let d = segment_distance((i as f32 + 0.5) / n, (j as f32 + 0.5) / n, a, b);
                let v = smoothstep(soft * 1.5, soft * 0.3, d) * (w / 0.0055).sqrt();
                let slot = &mut self.values[j * Self::N + i];
                *slot = slot.max(v);
            }
        }
    }

    /// The trees at anatomy point (`x`, `y`); 0 outside the square.
    fn at(&self, x: f32, y: f32) -> f32 {
        let n = Self::N as f32;
        let (fx, fy) = (x * n - 0.5, y * n - 0.5);
        if !(0.0..n - 1.0).contains(&fx) || !(0.0..n - 1.0).contains(&fy) {
            return 0.0;
        }
        let (i, j) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - i as f32, fy - j as f32);
        let v = |i: usize, j: usize| self.values[j * Self::N + i];
        let top = v(i, j) + (v(i + 1, j) - v(i, j)) * tx;
        let bottom = v(i, j + 1) + (v(i + 1, j + 1) - v(i, j + 1)) * tx;
        top + (bottom - top) * ty
    }
}

/// A half plane `nx * x + ny * y > c`.
#[derive(Clone, Copy, Debug)]
struct HalfPlane {
    nx: f32,
    ny: f32,
    c: f32,
}

impl HalfPlane {
    /// The side of the line through `point` along `dir` that holds `toward`.
    fn new(point: (f32, f32), dir: (f32, f32), toward: (f32, f32)) -> HalfPlane {
        let (nx, ny) = (-dir.1, dir.0);
        let sign = if nx * (toward.0 - point.0) + ny * (toward.1 - point.1) >= 0.0 {
            1.0
        } else {
            -1.0
        };
        let norm = nx.hypot(ny) * sign;
        let (nx, ny) = (nx / norm, ny / norm);
        HalfPlane {
            nx,
            ny,
            c: nx * point.0 + ny * point.1,
        }
    }

    /// Signed distance, positive inside.
    fn distance(&self, x: f32, y: f32) -> f32 {
        self.nx * x + self.ny * y - self.c
    }
}

/// One lung's cavity in (`u`, `y`) coordinates of its side.
#[derive(Clone, Copy, Debug)]
struct Lung {
    /// Top of the apex.
    apex_y: f32,
    /// Distance of the apex from the midline.
    apex_u: f32,
    /// Medial border (mediastinum half width).
    med_u: f32,
    /// Aortic knob: extra medial border width (left lung only) and its height.
    knob: f32,
    knob_y: f32,
    /// Lateral border at its widest, reached at `lat_y`.
    lat_u: f32,
    lat_y: f32,
    /// Diaphragm dome: `y = dome_y + dome_k * (u - dome_u)^2`.
    dome_y: f32,
    dome_u: f32,
    dome_k: f32,
    /// Pneumothorax: how far the lung edge is retracted from the chest wall
    /// at the apex (0 for none).
    gap: f32,
    /// Hilum (vessels and bronchi radiate from it).
    hilum_u: f32,
    hilum_y: f32,
}

impl Lung {
    /// A rise from 0 at `t = 0` to 1 at `t = 1`, flat at the end.
    fn shoulder(t: f32) -> f32 {
        let s = 1.0 - t.clamp(0.0, 1.0);
        1.0 - s * s * s.sqrt()
    }

    fn lateral(&self, y: f32) -> f32 {
        let t = (y - self.apex_y) / (self.lat_y - self.apex_y);
        self.apex_u + (self.lat_u - self.apex_u) * Self::shoulder(t)
    }

    fn medial(&self, y: f32) -> f32 {
        let t = (y - self.apex_y) / 0.14;
        let knob = self.knob * gauss((y - self.knob_y) / 0.035);
        self.apex_u - (self.apex_u - self.med_u - knob) * Self::shoulder(t)
    }

    fn diaphragm(&self, u: f32) -> f32 {
        self.dome_y + self.dome_k * (u - self.dome_u).powi(2)
    }

    /// The costophrenic angle's height.
    fn angle_y(&self) -> f32 {
        self.diaphragm(self.lat_u)
    }

    /// Approximate distance inside the cavity (negative outside).
    fn inside(&self, u: f32, y: f32) -> f32 {
        (self.lateral(y) - u)
            .min(u - self.medial(y))
            .min(y - self.apex_y)
            .min(self.diaphragm(u) - y)
    }

    /// Distance inside the lung tissue, which a pneumothorax pushes away
    /// from the apex and the lateral wall (equal to `inside` without one).
    fn tissue(&self, u: f32, y: f32) -> f32 {
        if self.gap == 0.0 {
            return self.inside(u, y);
        }
        let t = ((y - self.apex_y) / (self.angle_y() - self.apex_y)).clamp(0.0, 1.0);
        let wall_gap = self.gap * (1.0 - 0.75 * t);
        (self.lateral(y) - wall_gap - u)
            .min(u - self.medial(y))
            .min(y - self.apex_y - self.gap)
            .min(self.diaphragm(u) - y)
    }
}

/// The visible sign of a finding, beyond changes to the anatomy.
#[derive(Clone, Debug)]
enum Sign {
    /// A roundish opacity in a lung: mass, nodule, pneumonic patch,
    /// infiltrate, perihilar haze. `edge` is the soft rim in normalised
    /// radius, `lobes` (amplitude, phase) bumps of 3 and 5 per turn,
    /// `texture` how much a noise of `grain` cells per unit thins it.
    Blob {
        side: usize,
        shape: Ellipse,
        edge: f32,
        fill: f32,
        extra: f32,
        lobes: [(f32, f32); 2],
        texture: f32,
        grain: f32,
    },
    /// The part of a lung inside both half planes (a lobe behind its fissure,
    /// a collapsed wedge), with air bronchograms of strength `bronchi`.
    Region {
        side: usize,
        planes: [HalfPlane; 2],
        edge: f32,
        fill: f32,
        bronchi: f32,
    },
    /// Pleural fluid up to `height` above the costophrenic angle, climbing
    /// `meniscus` higher at the lateral wall.
    Fluid { side: usize, height: f32, meniscus: f32 },
    /// Thickened pleura along the lateral wall and apex between `y0` and `y1`.
    Rim {
        side: usize,
        thickness: f32,
        y0: f32,
        y1: f32,
    },
    /// Thin dense lines in the lungs (Kerley B lines, plate atelectasis).
    Lines {
        segments: Vec<((f32, f32), (f32, f32))>,
        half_width: f32,
        fill: f32,
    },
    /// A reticular net in both lungs, strongest in the periphery and in the
    /// lower (`lower`) or upper zones.
    Net { fill: f32, grain: f32, lower: bool },
    /// A gas-filled sac with a thin wall, gas above `level` and fluid below
    /// (hiatal hernia; emphysematous bulla with `level` below it).
    Bubble {
        shape: Ellipse,
        level: f32,
        wall: f32,
        gas: f32,
        fluid: f32,
    },
}

/// Where a pixel is, as the signs need it.
struct Spot {
    x: f32,
    y: f32,
    side: usize,
    u: f32,
    /// Lung cavity mask (0..1) of the side.
    cavity: f32,
}

/// What the signs do to a pixel: `keep` is the share of the lung's air left
/// (fills multiply it), `extra` density added.
struct Effect {
    keep: f32,
    extra: f32,
}

impl Effect {
    fn fill(&mut self, amount: f32) {
        self.keep *= 1.0 - amount.clamp(0.0, 1.0);
    }
}

/// Position and exposure of one image.
struct Pose {
    /// Image point the anatomy centre lands on.
    cx: f32,
    cy: f32,
    scale: f32,
    angle: f32,
    /// Density shown black and white, and the curve between.
    lo: f32,
    hi: f32,
    gamma: f32,
    /// Quantum noise (standard deviation of a grey level in 0..1).
    noise: f32,
    noise_seed: u64,
}

/// The anatomy before any finding, where signs are placed.
struct Base {
    lungs: [Lung; 2],
    heart: Ellipse,
}

/// Everything an image is drawn from.
struct Scene {
    lungs: [Lung; 2],
    heart: Ellipse,
    /// Midline of the mediastinum (trachea, heart shift with atelectasis).
    mid_x: f32,
    body_w: f32,
    rib_y0: f32,
    rib_step: f32,
    rib_curve: f32,
    female: bool,
    /// Multipliers of the lung air and the vessel markings.
    air_k: f32,
    marking_k: f32,
    /// Upper-zone vessels relative to lower (edema redistributes).
    upper_k: f32,
    vessels: TreeMap,
    texture: ValueNoise,
    signs: Vec<Sign>,
}

impl Scene {
    /// The patient's anatomy (shared by the follow-ups), varied a little per
    /// image, then each finding's changes and signs from its own stream.
    fn new(seed: u64, record: &ImageRecord) -> Scene {
        let mut rng = stream_rng(seed, Stream::Anatomy, record.patient, 0);
        let lat_u = uniform(&mut rng, 0.33, 0.36);
        let apex_y = uniform(&mut rng, 0.115, 0.145);
        let dome_y = uniform(&mut rng, 0.63, 0.68);
        let dome_k = uniform(&mut rng, 2.2, 2.8);
        let lung = |side: usize, rng: &mut ChaCha8Rng| Lung {
            apex_y: apex_y + uniform(rng, -0.008, 0.008),
            apex_u: uniform(rng, 0.15, 0.17),
            med_u: [0.05, 0.055][side],
            knob: [0.0, 0.025][side],
            knob_y: apex_y + 0.17,
            lat_u: lat_u + uniform(rng, -0.006, 0.006),
            lat_y: apex_y + uniform(rng, 0.34, 0.4),
            dome_y: dome_y + [0.0, 0.02][side] + uniform(rng, -0.008, 0.008),
            dome_u: uniform(rng, 0.14, 0.17),
            dome_k,
            gap: 0.0,
            hilum_u: uniform(rng, 0.085, 0.1),
            hilum_y: apex_y + [0.3, 0.28][side],
        };
        let lungs = [lung(0, &mut rng), lung(1, &mut rng)];
        let heart_rx = uniform(&mut rng, 0.15, 0.165) * if record.view == View::Ap { 1.08 } else { 1.0 };
        let heart_y = lungs[1].dome_y - uniform(&mut rng, 0.03, 0.05);
        let mut scene = Scene {
            heart: Ellipse::new(0.55, heart_y, heart_rx, 0.125, uniform(&mut rng, -0.6, -0.4)),
            mid_x: 0.5,
            body_w: lat_u + uniform(&mut rng, 0.06, 0.09),
            rib_y0: apex_y + uniform(&mut rng, -0.03, -0.01),
            rib_step: uniform(&mut rng, 0.05, 0.056),
            rib_curve: uniform(&mut rng, 0.9, 1.3),
            female: record.sex == Sex::Female,
            air_k: uniform(&mut rng, 0.92, 1.05),
            marking_k: uniform(&mut rng, 0.85, 1.1),
            upper_k: 1.0,
            vessels: TreeMap::new(&mut rng, &lungs),
            texture: ValueNoise::new(&mut rng),
            signs: Vec::new(),
            lungs,
        };
        let base = Base {
            lungs: scene.lungs,
            heart: scene.heart,
        };
        for finding in record.labels.findings() {
            let mut rng = stream_rng(seed, Stream::Sign(finding), record.patient, record.follow_up);
            scene.add(finding, &base, &mut rng);
        }
        scene
    }

    /// A point (x, y) at least `margin` inside lung `side` of `base` and
    /// clear of its heart, between heights `y0` and `y1` as fractions from
    /// apex to costophrenic angle (the lung's centre if 64 tries miss).
    fn place(base: &Base, rng: &mut ChaCha8Rng, side: usize, margin: f32, y0: f32, y1: f32) -> (f32, f32) {
        let lung = &base.lungs[side];
        let sign = if side == 0 { -1.0 } else { 1.0 };
        let clear = 1.0 + margin / base.heart.rx.min(base.heart.ry);
        let height = lung.angle_y() - lung.apex_y;
        let mut best = (lung.hilum_u + 0.08, lung.apex_y + 0.6 * height);
        for _ in 0..64 {
            let u = uniform(rng, lung.med_u, lung.lat_u);
            let y = lung.apex_y + height * uniform(rng, y0, y1);
            if lung.inside(u, y) > margin && base.heart.rho(0.5 + sign * u, y) > clear {
                best = (u, y);
                break;
            }
        }
        (0.5 + sign * best.0, best.1)
    }

    /// Applies `finding`: changes the anatomy and pushes its signs. Places
    /// signs in `base` (the anatomy before any finding), so one finding's
    /// placement does not depend on the others.
    fn add(&mut self, finding: Finding, base: &Base, rng: &mut ChaCha8Rng) {
        let side = usize::from(rng.gen_bool(0.5));
        let sign = if side == 0 { -1.0 } else { 1.0 };
        match finding {
            Finding::Atelectasis => {
                // Volume loss: the hemidiaphragm rises, the mediastinum
                // shifts towards the collapse; a dense basal wedge from the
                // hilum and plate-like lines above the diaphragm.
                let lung = &mut self.lungs[side];
                lung.dome_y -= uniform(rng, 0.03, 0.045);
                self.mid_x += sign * uniform(rng, 0.015, 0.025);
                self.heart.cx += sign * 0.02;
                let hilum = (0.5 + sign * lung.hilum_u, lung.hilum_y);
                let spread = uniform(rng, 0.35, 0.6);
                let lateral = (sign * 0.45, 1.0);
                let medial = (sign * -0.15, 1.0);
                let toward = (hilum.0 + sign * 0.05, hilum.1 + 0.2);
                let open = |d: (f32, f32)| (d.0 + sign * spread * 0.2, d.1);
                self.signs.push(Sign::Region {
                    side,
                    planes: [
                        HalfPlane::new(hilum, open(lateral), toward),
                        HalfPlane::new(hilum, medial, toward),
                    ],
                    edge: 0.006,
                    fill: 0.85,
                    bronchi: 0.0,
                });
                let y = lung.dome_y - uniform(rng, 0.05, 0.09);
                let segments = (0..rng.gen_range(1..=2))
                    .map(|i| {
                        let yy = y - 0.035 * i as f32;
                        let (u0, u1) = (uniform(rng, 0.12, 0.18), uniform(rng, 0.27, 0.32));
                        let tilt = uniform(rng, -0.02, 0.02);
                        ((0.5 + sign * u0, yy - tilt), (0.5 + sign * u1, yy + tilt))
                    })
                    .collect();
                self.signs.push(Sign::Lines {
                    segments,
                    half_width: 0.008,
                    fill: 0.8,
                });
            }
            Finding::Cardiomegaly => {
                // Cardiothoracic ratio above 0.5: a wider, rounder heart that
                // grows mostly to the patient's left.
                let k = uniform(rng, 1.35, 1.55);
                self.heart.rx *= k;
                self.heart.ry *= 1.0 + (k - 1.0) * 0.4;
                self.heart.cx += 0.025 * (k - 1.0) / 0.45;
            }
            Finding::Consolidation => {
                // A dense homogeneous lobe bounded by a sharp fissure, with
                // air bronchograms.
                let lung = &base.lungs[side];
                let upper = rng.gen_bool(0.45);
                let y = if upper {
                    lung.hilum_y - uniform(rng, 0.0, 0.04)
                } else {
                    lung.hilum_y + uniform(rng, 0.06, 0.12)
                };
                let point = (0.5 + sign * 0.2, y);
                let dir = (1.0, uniform(rng, -0.25, 0.25));
                let toward = (point.0, if upper { 0.0 } else { 1.0 });
                let plane = HalfPlane::new(point, dir, toward);
                self.signs.push(Sign::Region {
                    side,
                    planes: [plane, plane],
                    edge: 0.004,
                    fill: 0.95,
                    bronchi: 0.6,
                });
            }
            Finding::Edema => {
                // Bilateral perihilar (bat-wing) haze, Kerley B lines at the
                // lateral bases, upper-zone vessels prominent.
                self.upper_k = 1.6;
                let mut segments = Vec::new();
                for (s, lung) in base.lungs.iter().enumerate() {
                    let sg = if s == 0 { -1.0 } else { 1.0 };
                    let c = (0.5 + sg * (lung.hilum_u + 0.05), lung.hilum_y + 0.02);
                    self.signs.push(Sign::Blob {
                        side: s,
                        shape: Ellipse::new(c.0, c.1, uniform(rng, 0.13, 0.16), 0.11, 0.0),
                        edge: 0.8,
                        fill: uniform(rng, 0.55, 0.7),
                        extra: 0.0,
                        lobes: [(0.1, uniform(rng, 0.0, 6.0)), (0.05, 0.0)],
                        texture: 0.3,
                        grain: 14.0,
                    });
                    for _ in 0..rng.gen_range(6..=9) {
                        let y = lung.dome_y - uniform(rng, 0.0, 0.13);
                        let u1 = lung.lateral(y);
                        let u0 = u1 - uniform(rng, 0.035, 0.05);
                        segments.push(((0.5 + sg * u0, y), (0.5 + sg * (u1 + 0.01), y)));
                    }
                }
                self.signs.push(Sign::Lines {
                    segments,
                    half_width: 0.0045,
                    fill: 0.8,
                });
            }
            Finding::Effusion => {
                // Fluid at the base: blunted costophrenic angle, lost dome,
                // meniscus climbing the lateral wall. Bilateral in a third.
                let sides: &[usize] = if rng.gen_bool(0.33) { &[0, 1] } else { &[side] };
                for &s in sides {
                    self.signs.push(Sign::Fluid {
                        side: s,
                        height: uniform(rng, 0.06, 0.16),
                        meniscus: uniform(rng, 0.07, 0.12),
                    });
                }
            }
            Finding::Emphysema => {
                // Hyperinflation: larger, darker lungs with sparse vessels,
                // low flat diaphragm, narrow vertical heart; bullae up top.
                for lung in &mut self.lungs {
                    lung.dome_y += uniform(rng, 0.045, 0.065);
                    lung.dome_k *= 0.3;
                    lung.lat_u += 0.012;
                    lung.apex_y -= 0.01;
                }
                self.air_k *= 1.25;
                self.marking_k *= 0.4;
                self.heart.rx *= 0.82;
                self.heart.cy += 0.035;
                for _ in 0..rng.gen_range(1..=3) {
                    let s = usize::from(rng.gen_bool(0.5));
                    let r = uniform(rng, 0.035, 0.055);
                    let (x, y) = Self::place(base, rng, s, r, 0.08, 0.4);
                    self.signs.push(Sign::Bubble {
                        shape: Ellipse::new(x, y, r, r * 0.9, 0.0),
                        level: 1.0,
                        wall: 0.004,
                        gas: 0.12,
                        fluid: 0.0,
                    });
                }
            }
            Finding::Fibrosis => {
                // Reticular net, peripheral, lower or upper zones, with some
                // volume loss.
                for lung in &mut self.lungs {
                    lung.dome_y -= 0.015;
                }
                self.signs.push(Sign::Net {
                    fill: uniform(rng, 0.7, 0.9),
                    grain: uniform(rng, 20.0, 26.0),
                    lower: rng.gen_bool(0.6),
                });
            }
            Finding::Hernia => {
                // Hiatal hernia: a round sac behind the heart, above the
                // diaphragm, with a gas cap over an air-fluid level.
                let lung = &base.lungs[1];
                let r = uniform(rng, 0.055, 0.075);
                let c = (0.5 + uniform(rng, 0.0, 0.04), lung.dome_y - r * 0.6);
                self.signs.push(Sign::Bubble {
                    shape: Ellipse::new(c.0, c.1, r * 1.2, r, 0.0),
                    level: c.1 + uniform(rng, -0.2, 0.3) * r,
                    wall: 0.006,
                    gas: 0.3,
                    fluid: 0.03,
                });
            }
            Finding::Infiltration => {
                // Several faint, ill-defined, mottled patches.
                for _ in 0..rng.gen_range(3..=7) {
                    let s = if rng.gen_bool(0.7) { side } else { 1 - side };
                    let r = uniform(rng, 0.03, 0.055);
                    let (x, y) = Self::place(base, rng, s, 0.01, 0.25, 0.9);
                    self.signs.push(Sign::Blob {
                        side: s,
                        shape: Ellipse::new(x, y, r * 1.3, r, uniform(rng, 0.0, PI)),
                        edge: 0.6,
                        fill: uniform(rng, 0.45, 0.6),
                        extra: 0.0,
                        lobes: [(0.25, uniform(rng, 0.0, 6.0)), (0.15, uniform(rng, 0.0, 6.0))],
                        texture: 0.8,
                        grain: 30.0,
                    });
                }
            }
            Finding::Mass => {
                // One large (> 3 cm) round, well-defined, lobulated opacity.
                let r = uniform(rng, 0.05, 0.08);
                let (x, y) = Self::place(base, rng, side, r * 0.8, 0.15, 0.8);
                self.signs.push(Sign::Blob {
                    side,
                    shape: Ellipse::new(x, y, r, r * uniform(rng, 0.85, 1.0), uniform(rng, 0.0, PI)),
                    edge: 0.06,
                    fill: 1.0,
                    extra: 0.07,
                    lobes: [(0.07, uniform(rng, 0.0, 6.0)), (0.04, uniform(rng, 0.0, 6.0))],
                    texture: 0.05,
                    grain: 20.0,
                });
            }
            Finding::Nodule => {
                // Several small, dense, sharp round opacities.
                for _ in 0..rng.gen_range(2..=5) {
                    let s = usize::from(rng.gen_bool(0.5));
                    let r = uniform(rng, 0.014, 0.022);
                    let (x, y) = Self::place(base, rng, s, r * 1.5, 0.1, 0.85);
                    self.signs.push(Sign::Blob {
                        side: s,
                        shape: Ellipse::new(x, y, r, r, 0.0),
                        edge: 0.15,
                        fill: 1.0,
                        extra: 0.1,
                        lobes: [(0.0, 0.0), (0.0, 0.0)],
                        texture: 0.0,
                        grain: 1.0,
                    });
                }
            }
            Finding::PleuralThickening => {
                // A thick dense rim along the lateral wall and apex.
                let sides: &[usize] = if rng.gen_bool(0.4) { &[0, 1] } else { &[side] };
                for &s in sides {
                    let lung = &base.lungs[s];
                    let height = lung.angle_y() - lung.apex_y;
                    self.signs.push(Sign::Rim {
                        side: s,
                        thickness: uniform(rng, 0.025, 0.04),
                        y0: lung.apex_y + height * uniform(rng, -0.1, 0.3),
                        y1: lung.apex_y + height * uniform(rng, 0.7, 1.1),
                    });
                }
            }
            Finding::Pneumonia => {
                // One fluffy, rounded air-space opacity, mid or lower zone.
                let r = uniform(rng, 0.065, 0.1);
                let (x, y) = Self::place(base, rng, side, r * 0.5, 0.4, 0.85);
                self.signs.push(Sign::Blob {
                    side,
                    shape: Ellipse::new(x, y, r * 1.15, r, uniform(rng, 0.0, PI)),
                    edge: 0.35,
                    fill: uniform(rng, 0.85, 0.95),
                    extra: 0.0,
                    lobes: [(0.18, uniform(rng, 0.0, 6.0)), (0.1, uniform(rng, 0.0, 6.0))],
                    texture: 0.35,
                    grain: 16.0,
                });
            }
            Finding::Pneumothorax => {
                // Lung edge away from the apex and lateral wall: a band of air
                // with no markings outside a visible pleural line.
                self.lungs[side].gap = uniform(rng, 0.04, 0.08);
            }
        }
    }

    /// Adds one sign's effect at `p`.
    fn apply(&self, sign: &Sign, p: &Spot, e: &mut Effect) {
        match sign {
            Sign::Blob {
                side,
                shape,
                edge,
                fill,
                extra,
                lobes,
                texture,
                grain,
            } => {
                if *side != p.side || p.cavity == 0.0 {
                    return;
                }
                let mut rho = shape.rho(p.x, p.y);
                if rho > 1.6 + edge {
                    return;
                }
                if lobes[0].0 > 0.0 {
                    let a = (p.y - shape.cy).atan2(p.x - shape.cx);
                    rho /= 1.0 + lobes[0].0 * (3.0 * a + lobes[0].1).sin() + lobes[1].0 * (5.0 * a + lobes[1].1).sin();
                }
                let mut m = smoothstep(1.0 + edge, 1.0 - edge, rho);
                if *texture > 0.0 {
                    let n = self
                        .texture
                        .at(p.x * grain + shape.cx * 97.0, p.y * grain + shape.cy * 97.0);
                    m *= 1.0 - texture * (1.0 - n);
                }
                e.fill(fill * m);
                e.extra += extra * m * p.cavity;
            }
            Sign::Region {
                side,
                planes,
                edge,
                fill,
                bronchi,
            } => {
                if *side != p.side || p.cavity == 0.0 {
                    return;
                }
                let m = planes
                    .iter()
                    .map(|pl| smoothstep(-edge, *edge, pl.distance(p.x, p.y)))
                    .product::<f32>();
                if m == 0.0 {
                    return;
                }
                let air = bronchi * self.vessels.at(p.x, p.y);
                e.fill(fill * m * (1.0 - air));
            }
            Sign::Fluid { side, height, meniscus } => {
                if *side != p.side || p.cavity == 0.0 {
                    return;
                }
                let lung = &self.lungs[*side];
                let w = ((p.u - lung.med_u) / (lung.lat_u - lung.med_u)).clamp(0.0, 1.0);
                let level = lung.angle_y() - height - meniscus * w * w;
                e.fill(smoothstep(level, level + 0.03, p.y));
            }
            Sign::Rim {
                side,
                thickness,
                y0,
                y1,
            } => {
                if *side != p.side || p.cavity == 0.0 {
                    return;
                }
                let lung = &self.lungs[*side];
                let d = (lung.lateral(p.y) - p.u).min(p.y - lung.apex_y);
                let lumps = 0.6 + 0.8 * self.texture.at(p.y * 12.0, 7.5 + *side as f32 * 20.0);
                let along = smoothstep(*y0 - 0.02, *y0 + 0.02, p.y) * smoothstep(*y1 + 0.02, *y1 - 0.02, p.y);
                let m = smoothstep(thickness * lumps + 0.004, thickness * lumps - 0.004, d) * along;
                e.fill(m);
                e.extra += 0.04 * m * p.cavity;
            }
            Sign::Lines {
                segments,
                half_width,
                fill,
            } => {
                if p.cavity == 0.0 {
                    return;
                }
                let d = segments
                    .iter()
                    .map(|&(a, b)| segment_distance(p.x, p.y, a, b))
                    .fold(f32::INFINITY, f32::min);
                e.fill(fill * smoothstep(half_width * 1.6, half_width * 0.6, d));
            }
            Sign::Net { fill, grain, lower } => {
                if p.cavity == 0.0 {
                    return;
                }
                let lung = &self.lungs[p.side];
                let peripheral = smoothstep(0.45, 0.9, (p.u - lung.med_u) / (lung.lateral(p.y) - lung.med_u));
                let t = (p.y - lung.apex_y) / (lung.angle_y() - lung.apex_y);
                let zone = if *lower {
                    smoothstep(0.3, 0.75, t)
                } else {
                    smoothstep(0.65, 0.2, t)
                };
                let n1 = ridge(self.texture.at(p.x * grain, p.y * grain + 31.0));
                let n2 = ridge(self.texture.at(p.x * grain * 1.7 + 13.0, p.y * grain * 1.7));
                let lines = smoothstep(0.8, 0.95, n1.max(n2));
                e.fill(fill * lines * (0.4 + 0.6 * peripheral) * zone);
            }
            Sign::Bubble {
                shape,
                level,
                wall,
                gas,
                fluid,
            } => {
                let rho = shape.rho(p.x, p.y);
                if rho > 1.2 {
                    return;
                }
                let inside = smoothstep(1.0, 1.0 - wall / shape.ry, rho);
                let rim = smoothstep(1.0 + 2.0 * wall / shape.ry, 1.0, rho) - inside;
                let gas_part = smoothstep(level + 0.003, level - 0.003, p.y);
                e.extra += 0.06 * rim + inside * (fluid * (1.0 - gas_part) - gas * gas_part);
            }
        }
    }

    /// Density at anatomy point (`x`, `y`).
    fn density(&self, x: f32, y: f32) -> f32 {
        let side = usize::from(x >= 0.5);
        let u = (x - 0.5).abs();
        let lung = &self.lungs[side];
        let hilum = length(u - lung.hilum_u, y - lung.hilum_y);

        // Soft tissue: an elliptic cross-section, wider at the shoulders.
        let body_w = self.body_w + 0.12 * smoothstep(0.28, 0.04, y);
        let across = (x - 0.5) / body_w;
        let body = smoothstep(1.0, 0.97, across.abs()) * (1.0 - across * across).max(0.0).sqrt();
        let mut d = BODY * body;
        if self.female {
            let breast = Ellipse::new(0.5 + (x - 0.5).signum() * 0.22, lung.dome_y + 0.03, 0.16, 0.12, 0.0);
            d += 0.035 * breast.mask(x, y, 0.2);
        }

        d += self.bones(side, u, x, y);

        // Trachea and main bronchi: dark tubes down the mediastinum.
        let carina = (self.mid_x, lung.hilum_y - 0.06);
        let tube = (x - self.mid_x).abs().max(y - carina.1).max(0.0).min(segment_distance(
            x,
            y,
            carina,
            (self.mid_x + (x - self.mid_x).signum() * 0.06, carina.1 + 0.06),
        ));
        d -= 0.09 * smoothstep(0.016, 0.01, tube) * smoothstep(0.0, 0.05, y);

        // Lung air, less where the heart, the findings or thinner lung are.
        let inside = lung.inside(u, y);
        let cavity = smoothstep(-0.004, 0.004, inside);
        let heart = self.heart.mask(x, y, 0.025);
        let spot = Spot { x, y, side, u, cavity };
        let mut effect = Effect { keep: 1.0, extra: 0.0 };
        for sign in &self.signs {
            self.apply(sign, &spot, &mut effect);
        }
        d += effect.extra;
        if cavity > 0.0 {
            let tissue_d = lung.tissue(u, y);
            let tissue = smoothstep(-0.003, 0.003, tissue_d);
            let depth = 0.45 + 0.55 * smoothstep(0.0, 0.08, inside);
            // A pneumothorax's gap is air through the whole chest depth.
            let thickness = tissue * depth + (1.0 - tissue) * 1.1;
            let air = AIR * self.air_k * cavity * thickness * (1.0 - heart) * effect.keep;
            let t = ((y - lung.apex_y) / (lung.angle_y() - lung.apex_y)).clamp(0.0, 1.0);
            let zone = self.upper_k + (1.0 - self.upper_k) * t;
            let marks = self.vessels.at(x, y) * zone * (0.35 + 0.65 * (-hilum / 0.15).exp());
            let grain = self.texture.at(x * 40.0, y * 40.0) + 0.5 * self.texture.at(x * 90.0, y * 90.0) - 0.75;
            // The visceral pleural line, where the gap parts tissue from wall.
            let pleura = 0.07 * smoothstep(0.006, 0.0015, tissue_d.abs()) * smoothstep(0.003, 0.01, inside - tissue_d);
            let seen = cavity * tissue * (1.0 - heart) * effect.keep;
            d += -air + seen * (MARKING * self.marking_k * marks + 0.04 * grain) + pleura;
        }
        d + 0.05 * gauss(hilum / 0.025)
    }

    /// Ribs, clavicles, spine and humeral heads at (`x`, `y`).
    fn bones(&self, side: usize, u: f32, x: f32, y: f32) -> f32 {
        let lung = &self.lungs[side];
        let mut d = 0.0;
        // Spine: vertebral bodies with darker disc spaces and pedicles.
        let sx = x - self.mid_x;
        if sx.abs() < 0.04 {
            let cell = (y - self.rib_y0) / (self.rib_step * 0.85);
            let f = cell - cell.floor();
            let body = smoothstep(0.036, 0.03, sx.abs());
            let disc = smoothstep(0.0, 0.12, f) * smoothstep(1.0, 0.88, f);
            let pedicle = Ellipse::new(0.022, 0.45, 0.008, 0.18, 0.0).mask(sx.abs(), f, 0.3);
            d += body * (0.02 + 0.02 * disc) + 0.02 * pedicle;
        }
        // Posterior ribs: arcs from the spine, outward then down the wall;
        // anterior ribs, fainter, slanting down towards the sternum.
        let wall = lung.lateral(y.max(lung.apex_y + 0.02)) + 0.02;
        if u > 0.02 && u < wall && y > self.rib_y0 - 0.05 {
            let w = u / lung.lat_u;
            let cage = smoothstep(wall, wall - 0.02, u);
            let arc = self.rib_curve * (0.24 * w * w * w - 0.18 * w);
            let phase = (y - self.rib_y0 - arc) / self.rib_step;
            if (0.0..10.0).contains(&phase) {
                let f = phase - phase.floor();
                let band = smoothstep(0.0, 0.05, f) * smoothstep(0.42, 0.36, f);
                let cortex = smoothstep(0.08, 0.0, f) + smoothstep(0.3, 0.38, f) * smoothstep(0.43, 0.38, f);
                let lateral = smoothstep(0.035, 0.07, u);
                d += RIB * cage * lateral * (band * 0.8 + 0.4 * cortex * band.max(0.3));
            }
            let front = (y - self.rib_y0 - 0.08 - lung.lat_u * 0.5 * (1.0 - w)) / (self.rib_step * 1.15);
            if (0.0..6.0).contains(&front) && w > 0.3 {
                let f = front - front.floor();
                d += 0.4 * RIB * cage * smoothstep(0.0, 0.06, f) * smoothstep(0.35, 0.28, f) * smoothstep(0.3, 0.45, w);
            }
        }
        // Clavicles: S-shaped bars from the sternum to the shoulders.
        let sign = if side == 0 { -1.0 } else { 1.0 };
        let p = |uu: f32, yy: f32| (0.5 + sign * uu, self.rib_y0 + yy);
        let clavicle = segment_distance(x, y, p(0.04, 0.07), p(0.15, 0.045)).min(segment_distance(
            x,
            y,
            p(0.15, 0.045),
            p(0.3, 0.0),
        ));
        d += 1.2 * RIB * smoothstep(0.018, 0.012, clavicle);
        // Humeral heads at the top corners.
        let humerus = Ellipse::new(0.5 + sign * (self.body_w + 0.06), self.rib_y0 + 0.01, 0.065, 0.07, 0.0);
        d + RIB * humerus.mask(x, y, 0.08)
    }
}

/// A hash of (`seed`, `i`) as two numbers in 0..1 (SplitMix64).
fn hash_pair(seed: u64, i: u64) -> (f32, f32) {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let unit = |bits: u64| (bits & 0xFF_FFFF) as f32 / 16_777_216.0;
    (unit(z), unit(z >> 32))
}

/// The image of `record` in the set of `seed`, `size` x `size` pixels.
///
/// The anatomy comes from (`seed`, patient), so follow-ups show the same
/// chest; pose, exposure and noise from (`seed`, patient, follow-up); each
/// finding's sign from its own stream. So the same record with one finding
/// more differs only by that finding's sign and its effect on the anatomy.
/// Deterministic: same arguments, same pixels.
pub fn render(seed: u64, record: &ImageRecord, size: u32) -> GrayImage {
    let scene = Scene::new(seed, record);
    let mut rng = stream_rng(seed, Stream::Image, record.patient, record.follow_up);
    let pose = Pose {
        cx: 0.5 + uniform(&mut rng, -0.025, 0.025),
        cy: 0.5 + uniform(&mut rng, -0.025, 0.03),
        scale: uniform(&mut rng, 0.95, 1.06),
        angle: uniform(&mut rng, -3.0, 3.0).to_radians(),
        lo: uniform(&mut rng, -0.02, 0.04),
        hi: uniform(&mut rng, 0.86, 0.98),
        gamma: uniform(&mut rng, 0.85, 1.15),
        noise: uniform(&mut rng, 0.01, 0.025),
        noise_seed: rng.gen(),
    };
    // Image point -> anatomy point: undo the pose (rotate about and scale
    // from its centre), incrementally along each row.
    let step = 1.0 / size as f32;
    let (cos, sin) = (pose.angle.cos() / pose.scale, pose.angle.sin() / pose.scale);
    // The exposure curve v^gamma, tabulated.
    const CURVE: usize = 4096;
    let curve: Vec<f32> = (0..CURVE)
        .map(|i| (i as f32 / (CURVE - 1) as f32).powf(pose.gamma))
        .collect();
    let mut pixels = Vec::with_capacity(size as usize * size as usize);
    for row in 0..size {
        let iy = (row as f32 + 0.5) * step - pose.cy;
        for col in 0..size {
            let ix = (col as f32 + 0.5) * step - pose.cx;
            let x = 0.5 + ix * cos + iy * sin;
            let y = 0.5 - ix * sin + iy * cos;
            let v = ((scene.density(x, y) - pose.lo) / (pose.hi - pose.lo)).clamp(0.0, 1.0);
            let (a, b) = hash_pair(pose.noise_seed, u64::from(row) * u64::from(size) + u64::from(col));
            let v = curve[(v * (CURVE - 1) as f32 + 0.5) as usize] + pose.noise * (a + b - 1.0) * 2.45;
            pixels.push((v * 255.0 + 0.5).clamp(0.0, 255.0) as u8);
        }
    }
    GrayImage { size, pixels }
}
