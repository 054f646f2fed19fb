//! What a model is: architecture, SE block, class names, latent shape, and
//! the clamp its inputs get before the first layer.

use super::{NnError, Real};
use std::fmt;
use std::str::FromStr;

/// The classifier architectures of the paper (reference code: `models/*.py`
/// of github.com/jongdory/Latent-HE; our PyTorch twin: `training/models.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// CIFAR-style ResNet, 3 blocks per stage (widths 16/32/64).
    ResNet20,
    /// CIFAR-style ResNet, 5 blocks per stage.
    ResNet32,
    /// CIFAR-style ResNet, 7 blocks per stage.
    ResNet44,
    /// CIFAR-style ResNet, 9 blocks per stage.
    ResNet56,
    /// LeNet5 with 5x5 convolutions (32, 64 in 4 groups, 128 channels).
    LeNet5,
    /// VGG5: four 3x3 convolutions (32, 64, 128, 256; grouped), one shared activation.
    Vgg5,
    /// HefNet: four convolutions with batch norm (64, 128, 256, 256; grouped), one shared activation.
    HefNet,
}

impl Arch {
    /// Every architecture, in the order of the paper's table.
    pub const ALL: [Arch; 7] = [
        Arch::LeNet5,
        Arch::HefNet,
        Arch::Vgg5,
        Arch::ResNet20,
        Arch::ResNet32,
        Arch::ResNet44,
        Arch::ResNet56,
    ];

    /// The canonical lower-case name (`resnet20`, `lenet5`, `vgg5`, `hefnet`),
    /// which [`Arch::from_str`] accepts and metadata stores.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet20 => "resnet20",
            Arch::ResNet32 => "resnet32",
            Arch::ResNet44 => "resnet44",
            Arch::ResNet56 => "resnet56",
            Arch::LeNet5 => "lenet5",
            Arch::Vgg5 => "vgg5",
            Arch::HefNet => "hefnet",
        }
    }

    /// Blocks per stage for a ResNet (3, 5, 7, 9), `None` for the others.
    pub fn resnet_blocks(self) -> Option<usize> {
        match self {
            Arch::ResNet20 => Some(3),
            Arch::ResNet32 => Some(5),
            Arch::ResNet44 => Some(7),
            Arch::ResNet56 => Some(9),
            _ => None,
        }
    }

    /// The ResNet with `n` blocks per stage, if the paper has one.
    pub fn resnet_with_blocks(n: usize) -> Option<Arch> {
        match n {
            3 => Some(Arch::ResNet20),
            5 => Some(Arch::ResNet32),
            7 => Some(Arch::ResNet44),
            9 => Some(Arch::ResNet56),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = NnError;

    /// Case-insensitive; also accepts the reference's spellings `lenet`,
    /// `vgg`, `hefnet` and `resnet-20`.
    fn from_str(s: &str) -> Result<Self, NnError> {
        let key: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect();
        match key.as_str() {
            "resnet20" => Ok(Arch::ResNet20),
            "resnet32" => Ok(Arch::ResNet32),
            "resnet44" => Ok(Arch::ResNet44),
            "resnet56" => Ok(Arch::ResNet56),
            "lenet5" | "lenet" => Ok(Arch::LeNet5),
            "vgg5" | "vgg" => Ok(Arch::Vgg5),
            "hefnet" => Ok(Arch::HefNet),
            _ => Err(NnError::Parse {
                what: "arch",
                value: s.to_string(),
                reason: "expected resnet20, resnet32, resnet44, resnet56, lenet5, vgg5 or hefnet".into(),
            }),
        }
    }
}

/// Most values one latent may hold, `C * H * W`: 2^20, thirty-two times
/// the paper's largest (2x128x128), so that a shape from a file's metadata
/// or a flag cannot ask for more memory than a plan or a forward pass has.
pub const MAX_LATENT_VALUES: usize = 1 << 20;

/// A latent's shape `C x H x W` (one image, no batch axis). All three are
/// at least 1 and their product is at most [`MAX_LATENT_VALUES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatentShape {
    channels: usize,
    height: usize,
    width: usize,
}

impl LatentShape {
    /// A shape; every side must be at least 1 and the product at most
    /// [`MAX_LATENT_VALUES`].
    ///
    /// # Errors
    /// [`NnError::Parse`] when a side is 0 or the shape is too large.
    pub fn new(channels: usize, height: usize, width: usize) -> Result<Self, NnError> {
        let refuse = |reason: String| NnError::Parse {
            what: "latent",
            value: format!("{channels}x{height}x{width}"),
            reason,
        };
        if channels == 0 || height == 0 || width == 0 {
            return Err(refuse("every side must be at least 1".into()));
        }
        let values = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .filter(|&v| v <= MAX_LATENT_VALUES);
        if values.is_none() {
            return Err(refuse(format!(
                "more than the {MAX_LATENT_VALUES} values a latent may hold"
            )));
        }
        Ok(LatentShape {
            channels,
            height,
            width,
        })
    }

    /// The paper's VQGAN latent for downsampling factor `f` of a 256x256
    /// image: f=2: 2x128x128, f=4: 3x64x64, f=8: 4x32x32, f=16: 8x16x16.
    pub fn for_factor(f: usize) -> Option<Self> {
        let channels = match f {
            2 => 2,
            4 => 3,
            8 => 4,
            16 => 8,
            _ => return None,
        };
        Some(LatentShape {
            channels,
            height: 256 / f,
            width: 256 / f,
        })
    }

    /// The paper's latent with this many channels (the inverse of
    /// [`LatentShape::for_factor`]): the channel count identifies the factor.
    pub fn for_channels(channels: usize) -> Option<Self> {
        [2, 4, 8, 16]
            .into_iter()
            .filter_map(Self::for_factor)
            .find(|s| s.channels == channels)
    }

    /// Channels (C).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Height (H).
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width (W).
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[C, H, W]`.
    pub fn dims(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Values per image, `C * H * W`.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Always false: every side is at least 1.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for LatentShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

impl FromStr for LatentShape {
    type Err = NnError;

    /// `CxHxW` (e.g. `4x32x32`), or `f2`/`f4`/`f8`/`f16` for the paper's latents.
    fn from_str(s: &str) -> Result<Self, NnError> {
        let bad = |reason: &str| NnError::Parse {
            what: "latent",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim().to_ascii_lowercase();
        if let Some(f) = t.strip_prefix('f') {
            let f: usize = f.parse().map_err(|_| bad("expected CxHxW or f2, f4, f8, f16"))?;
            return Self::for_factor(f).ok_or_else(|| bad("the paper's factors are f2, f4, f8, f16"));
        }
        let parts: Vec<&str> = t.split('x').collect();
        if parts.len() != 3 {
            return Err(bad("expected CxHxW, e.g. 4x32x32"));
        }
        let mut dims = [0usize; 3];
        for (d, p) in dims.iter_mut().zip(&parts) {
            *d = p
                .trim()
                .parse()
                .map_err(|_| bad("expected CxHxW with positive integers"))?;
        }
        Self::new(dims[0], dims[1], dims[2])
    }
}

/// NIH ChestX-ray14's 14 findings plus `No Finding`, in the order of the
/// data set's paper (Wang et al. 2017) with `No Finding` last.
pub const NIH15: [&str; 15] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
    "No Finding",
];

/// CheXpert's 14 labels in the order of its CSV columns.
pub const CHEXPERT14: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// The bound a model's inputs are clamped to before its first layer: every
/// latent value `v` becomes `v.clamp(-bound, bound)`. Models trained on
/// heavy-tailed latents (`training/train.py --input-clip`) record it in the
/// `input_clip` metadata key. The clamp is not a polynomial, so it is the
/// client's step: it runs before encryption, and the plaintext forward pass
/// runs it too.
///
/// Invariant: the bound is finite and positive.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct InputClip(f64);

impl Eq for InputClip {}

impl InputClip {
    /// A clamp to `[-bound, bound]`.
    ///
    /// # Errors
    /// [`NnError::Parse`] unless `bound` is finite and positive.
    pub fn new(bound: f64) -> Result<Self, NnError> {
        if bound.is_finite() && bound > 0.0 {
            Ok(InputClip(bound))
        } else {
            Err(NnError::Parse {
                what: "input_clip",
                value: bound.to_string(),
                reason: "expected a finite positive bound".into(),
            })
        }
    }

    /// The bound.
    pub fn bound(self) -> f64 {
        self.0
    }

    /// Clamps every finite value in place; NaN and infinities stay as they
    /// are, for the caller's finiteness check to refuse.
    pub fn apply<'a, T: Real + 'a>(self, values: impl IntoIterator<Item = &'a mut T>) {
        let (low, high) = (T::from_f64(-self.0), T::from_f64(self.0));
        for v in values.into_iter().filter(|v| v.to_f64().is_finite()) {
            if *v > high {
                *v = high;
            } else if *v < low {
                *v = low;
            }
        }
    }

    /// The values of `x` in row-major order, clamped by `clip` when there is
    /// one: what a client encrypts for a model with that clamp.
    pub fn clamped_values<'a, T: Real + 'a>(clip: Option<Self>, x: impl IntoIterator<Item = &'a T>) -> Vec<T> {
        let mut values: Vec<T> = x.into_iter().copied().collect();
        if let Some(clip) = clip {
            clip.apply(&mut values);
        }
        values
    }
}

impl TryFrom<f64> for InputClip {
    type Error = NnError;

    fn try_from(bound: f64) -> Result<Self, NnError> {
        Self::new(bound)
    }
}

impl From<InputClip> for f64 {
    fn from(clip: InputClip) -> f64 {
        clip.0
    }
}

impl fmt::Display for InputClip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for InputClip {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, NnError> {
        let bound = s.trim().parse::<f64>().map_err(|e| NnError::Parse {
            what: "input_clip",
            value: s.to_string(),
            reason: e.to_string(),
        })?;
        Self::new(bound)
    }
}

/// Parses a class list: `nih15`, `chexpert14`, or comma-separated names
/// (trimmed, non-empty, distinct). The result is never empty.
///
/// # Errors
/// [`NnError::Parse`] for an empty list, an empty name or a repeated name.
pub fn parse_classes(s: &str) -> Result<Vec<String>, NnError> {
    let bad = |reason: String| NnError::Parse {
        what: "classes",
        value: s.to_string(),
        reason,
    };
    match s.trim().to_ascii_lowercase().as_str() {
        "nih15" | "nih" => return Ok(NIH15.iter().map(|c| c.to_string()).collect()),
        "chexpert14" | "chexpert" => return Ok(CHEXPERT14.iter().map(|c| c.to_string()).collect()),
        _ => {}
    }
    let names: Vec<String> = s.split(',').map(|c| c.trim().to_string()).collect();
    if names.iter().any(String::is_empty) {
        return Err(bad(
            "expected nih15, chexpert14 or comma-separated non-empty names".into()
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(bad(format!("class {n:?} appears twice")));
        }
    }
    Ok(names)
}

/// Parses a boolean setting: `true`/`false`, `1`/`0`, `yes`/`no` (any case).
///
/// # Errors
/// [`NnError::Parse`] for anything else.
pub fn parse_bool(what: &'static str, s: &str) -> Result<bool, NnError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(NnError::Parse {
            what,
            value: s.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

/// Everything that fixes a model's structure and tensor shapes.
///
/// Invariant: `classes` is non-empty with distinct, non-blank names free of
/// commas (checked by [`ModelSpec::new`]); whether the architecture fits the latent is checked
/// when a model is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    arch: Arch,
    se: bool,
    classes: Vec<String>,
    latent: LatentShape,
    input_clip: Option<InputClip>,
}

impl ModelSpec {
    /// A spec.
    ///
    /// # Errors
    /// [`NnError::Parse`] when `classes` is empty, repeats a name, or has a
    /// blank name or one with a comma (metadata joins names with commas).
    pub fn new(arch: Arch, se: bool, classes: Vec<String>, latent: LatentShape) -> Result<Self, NnError> {
        if classes.is_empty() {
            return Err(NnError::Parse {
                what: "classes",
                value: String::new(),
                reason: "no classes".into(),
            });
        }
        for (i, n) in classes.iter().enumerate() {
            let reason = if classes[..i].contains(n) {
                format!("class {n:?} appears twice")
            } else if n.trim().is_empty() || n.contains(',') {
                format!("class {n:?} is empty or holds a comma")
            } else {
                continue;
            };
            return Err(NnError::Parse {
                what: "classes",
                value: classes.join(","),
                reason,
            });
        }
        Ok(ModelSpec {
            arch,
            se,
            classes,
            latent,
            input_clip: None,
        })
    }

    /// The same spec with inputs clamped by `clip` (`None`: unclamped).
    pub fn with_input_clip(mut self, clip: Option<InputClip>) -> Self {
        self.input_clip = clip;
        self
    }

    /// A spec with `n` classes named `class_0`, `class_1`, ...
    ///
    /// # Errors
    /// [`NnError::Parse`] when `n` is 0.
    pub fn with_class_count(arch: Arch, se: bool, n: usize, latent: LatentShape) -> Result<Self, NnError> {
        Self::new(arch, se, (0..n).map(|i| format!("class_{i}")).collect(), latent)
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Whether the squeeze-and-excitation block (`attn`) is present.
    pub fn se(&self) -> bool {
        self.se
    }

    /// Class names, one per logit, in logit order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The input latent's shape.
    pub fn latent(&self) -> LatentShape {
        self.latent
    }

    /// The clamp the inputs get before the first layer, if any.
    pub fn input_clip(&self) -> Option<InputClip> {
        self.input_clip
    }

    /// The safetensors metadata that records this spec (keys `arch`, `se`,
    /// `classes`, `latent`, and `input_clip` when there is one).
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut meta = vec![
            ("arch".into(), self.arch.name().into()),
            ("se".into(), self.se.to_string()),
            ("classes".into(), self.classes.join(",")),
            ("latent".into(), self.latent.to_string()),
        ];
        if let Some(clip) = self.input_clip {
            meta.push(("input_clip".into(), clip.to_string()));
        }
        meta
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} ({} classes, latent {}",
            self.arch,
            if self.se { "+se" } else { "" },
            self.classes.len(),
            self.latent
        )?;
        match self.input_clip {
            Some(clip) => write!(f, " clamped to +-{clip})"),
            None => write!(f, ")"),
        }
    }
}
