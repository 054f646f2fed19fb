//! The shape of a taming-transformers VQGAN (`ddconfig` plus the quantizer):
//! the paper's presets, the safetensors metadata that records a config, and
//! the inference of a config from the tensor names and shapes of a state dict.

use super::VqganError;
use crate::nn::StateDict;
use serde::{Deserialize, Serialize};

/// The GroupNorm group count every taming norm layer uses; every channel
/// count of the network must be a multiple of it.
pub const NORM_GROUPS: usize = 32;

/// The safetensors metadata key holding a [`VqganConfig`] as JSON (written by
/// `training/vqgan_model.py`).
pub const CONFIG_METADATA_KEY: &str = "vqgan_config";

/// A VQGAN's hyper-parameters, with taming's names.
///
/// Invariants (checked by [`VqganConfig::validate`]): `ch_mult` is non-empty;
/// every channel count (`ch * m` for `m` in `ch_mult`) is a positive multiple
/// of [`NORM_GROUPS`]; `resolution` is divisible by the downsampling factor;
/// all other counts are positive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VqganConfig {
    /// Channels of the first level.
    pub ch: usize,
    /// Channel multiplier per resolution level; its length minus one is the
    /// number of 2x downsamplings.
    pub ch_mult: Vec<usize>,
    /// ResNet blocks per encoder level (the decoder has one more).
    pub num_res_blocks: usize,
    /// Resolutions (side lengths) at which the levels' blocks are followed by
    /// attention; the mid block always has attention.
    pub attn_resolutions: Vec<usize>,
    /// Channels of the encoder output (the classifier's latent).
    pub z_channels: usize,
    /// Whether the encoder emits `2 * z_channels` (taming's `double_z`).
    #[serde(default)]
    pub double_z: bool,
    /// Image channels in.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out of the decoder.
    #[serde(default = "three")]
    pub out_ch: usize,
    /// Side length of the training images; fixes which levels attend.
    #[serde(default = "default_resolution")]
    pub resolution: usize,
    /// Codebook vector length (channels after `quant_conv`).
    pub embed_dim: usize,
    /// Codebook entries.
    pub n_embed: usize,
}

fn three() -> usize {
    3
}

fn default_resolution() -> usize {
    256
}

/// The paper's presets by name, with the downsampling factor each gives.
pub const PRESET_NAMES: [&str; 4] = ["f2", "f4", "f8", "f16"];

impl VqganConfig {
    /// The paper's configuration `f2`, `f4`, `f8` or `f16`
    /// (`compression/configs/cxr_f{N}_vqgan.yaml`): `ch` 128, two ResNet
    /// blocks a level, attention at resolution 16, codebook 1024 x 256.
    /// f=8 is the reference document's config exactly; for f=2/4/16 the
    /// document gives the latent channels and the number of levels, and the
    /// multipliers follow taming's own configs.
    pub fn preset(name: &str) -> Result<Self, VqganError> {
        let (ch_mult, z_channels) = match name {
            "f2" => (vec![1, 2], 2),
            "f4" => (vec![1, 2, 4], 3),
            "f8" => (vec![1, 2, 2, 4], 4),
            "f16" => (vec![1, 1, 2, 2, 4], 8),
            _ => {
                return Err(VqganError::Config(format!(
                    "unknown preset `{name}` (known: {})",
                    PRESET_NAMES.join(", ")
                )))
            }
        };
        Ok(VqganConfig {
            ch: 128,
            ch_mult,
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            z_channels,
            double_z: false,
            in_channels: 3,
            out_ch: 3,
            resolution: 256,
            embed_dim: 256,
            n_embed: 1024,
        })
    }

    /// The spatial downsampling factor, `2^(levels - 1)`.
    pub fn factor(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }

    /// Channels the encoder emits (`z_channels`, doubled with `double_z`).
    pub fn encoder_out_channels(&self) -> usize {
        self.z_channels * if self.double_z { 2 } else { 1 }
    }

    /// Whether the blocks of encoder level `level` are followed by attention.
    pub fn attends_at(&self, level: usize) -> bool {
        self.attn_resolutions.contains(&(self.resolution >> level))
    }

    /// The channels of level `level` (`ch * ch_mult[level]`).
    pub fn level_channels(&self, level: usize) -> usize {
        self.ch * self.ch_mult[level]
    }

    /// Checks the invariants listed on the type.
    pub fn validate(&self) -> Result<(), VqganError> {
        let bad = |reason: String| Err(VqganError::Config(reason));
        if self.ch_mult.is_empty() || self.ch_mult.len() > 12 {
            return bad(format!("ch_mult {:?} must have 1 to 12 levels", self.ch_mult));
        }
        for (name, value) in [
            ("num_res_blocks", self.num_res_blocks),
            ("z_channels", self.z_channels),
            ("in_channels", self.in_channels),
            ("out_ch", self.out_ch),
            ("embed_dim", self.embed_dim),
            ("n_embed", self.n_embed),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        for level in 0..self.ch_mult.len() {
            let c = self.ch.saturating_mul(self.ch_mult[level]);
            if c == 0 || !c.is_multiple_of(NORM_GROUPS) {
                return bad(format!(
                    "level {level} has {c} channels (ch {} x {}): GroupNorm needs a positive multiple of {NORM_GROUPS}",
                    self.ch, self.ch_mult[level]
                ));
            }
        }
        if self.resolution == 0 || !self.resolution.is_multiple_of(self.factor()) {
            return bad(format!(
                "resolution {} is not divisible by the factor {}",
                self.resolution,
                self.factor()
            ));
        }
        Ok(())
    }

    /// The config recorded in a state dict's metadata, if any.
    ///
    /// # Errors
    /// [`VqganError::Config`] when the key is there but does not parse.
    pub fn from_metadata(dict: &StateDict) -> Result<Option<Self>, VqganError> {
        let Some(text) = dict.metadata(CONFIG_METADATA_KEY) else {
            return Ok(None);
        };
        let config: VqganConfig = serde_json::from_str(text)
            .map_err(|e| VqganError::Config(format!("metadata `{CONFIG_METADATA_KEY}`: {e}")))?;
        config.validate()?;
        Ok(Some(config))
    }

    /// Infers the config from taming's tensor names and shapes. What the
    /// weights cannot say (the training resolution, hence which levels
    /// attend) is taken from `fallback`'s resolution: a level attends when it
    /// has `attn` tensors.
    ///
    /// # Errors
    /// [`VqganError::Config`] naming the tensor that is missing or whose shape
    /// does not fit.
    pub fn infer(dict: &StateDict, resolution: usize) -> Result<Self, VqganError> {
        let shape = |name: &str| -> Result<&[usize], VqganError> {
            dict.get(name)
                .map(|t| t.shape())
                .ok_or_else(|| VqganError::Config(format!("cannot infer the config: no tensor `{name}`")))
        };
        let dim = |name: &str, axis: usize| -> Result<usize, VqganError> {
            shape(name)?
                .get(axis)
                .copied()
                .ok_or_else(|| VqganError::Config(format!("cannot infer the config: `{name}` has too few axes")))
        };
        let conv_in = "encoder.conv_in.weight";
        let ch = dim(conv_in, 0)?;
        let in_channels = dim(conv_in, 1)?;
        let levels = (0..)
            .take_while(|i| dict.get(&format!("encoder.down.{i}.block.0.conv1.weight")).is_some())
            .count();
        if levels == 0 {
            return Err(VqganError::Config(
                "cannot infer the config: no `encoder.down.0.block.0.conv1.weight`".into(),
            ));
        }
        let num_res_blocks = (0..)
            .take_while(|j| dict.get(&format!("encoder.down.0.block.{j}.conv1.weight")).is_some())
            .count();
        let mut ch_mult = Vec::with_capacity(levels);
        let mut attn_resolutions = Vec::new();
        for i in 0..levels {
            let c = dim(&format!("encoder.down.{i}.block.0.conv1.weight"), 0)?;
            if ch == 0 || c % ch != 0 {
                return Err(VqganError::Config(format!(
                    "cannot infer the config: level {i} has {c} channels, not a multiple of ch {ch}"
                )));
            }
            ch_mult.push(c / ch);
            if dict.get(&format!("encoder.down.{i}.attn.0.q.weight")).is_some() {
                attn_resolutions.push(resolution >> i);
            }
        }
        let encoder_out = dim("encoder.conv_out.weight", 0)?;
        let z_channels = match dict.get("decoder.conv_in.weight") {
            Some(t) => t.shape().get(1).copied().unwrap_or(encoder_out),
            None => encoder_out,
        };
        let double_z = encoder_out == 2 * z_channels && encoder_out != z_channels;
        let config = VqganConfig {
            ch,
            ch_mult,
            num_res_blocks,
            attn_resolutions,
            z_channels,
            double_z,
            in_channels,
            out_ch: match dict.get("decoder.conv_out.weight") {
                Some(t) => t.shape().first().copied().unwrap_or(3),
                None => 3,
            },
            resolution,
            // An encoder-only export may hold no quantizer: nothing then
            // reads these two (encoding without --quantized needs neither).
            embed_dim: match dict.get("quant_conv.weight") {
                Some(_) => dim("quant_conv.weight", 0)?,
                None => z_channels,
            },
            n_embed: match dict.get("quantize.embedding.weight") {
                Some(_) => dim("quantize.embedding.weight", 0)?,
                None => 1,
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// The config of a state dict: its metadata when present, else inferred
    /// from its tensors (with `preset`'s resolution, or 256), else `preset`.
    /// A `preset` that contradicts the file is refused.
    ///
    /// # Errors
    /// [`VqganError::Config`] when no source gives a config or the preset
    /// and the file disagree.
    pub fn resolve(dict: &StateDict, preset: Option<&str>) -> Result<Self, VqganError> {
        let preset = preset.map(VqganConfig::preset).transpose()?;
        let from_file = match VqganConfig::from_metadata(dict)? {
            Some(config) => Some(config),
            None if dict.get("encoder.conv_in.weight").is_some() => Some(VqganConfig::infer(
                dict,
                preset.as_ref().map_or(default_resolution(), |p| p.resolution),
            )?),
            None => None,
        };
        // A file without a quantizer says nothing of its sizes: the preset's
        // stand (for the comparison below and the summary).
        let from_file = match (from_file, &preset) {
            (Some(file), Some(preset)) if dict.get("quant_conv.weight").is_none() => Some(VqganConfig {
                embed_dim: preset.embed_dim,
                n_embed: preset.n_embed,
                ..file
            }),
            (file, _) => file,
        };
        match (from_file, preset) {
            (Some(file), Some(preset)) if !file.same_network(&preset) => Err(VqganError::Config(format!(
                "the file's network ({}) is not the preset's ({})",
                file.summary(),
                preset.summary()
            ))),
            (Some(file), _) => Ok(file),
            (None, Some(preset)) => Ok(preset),
            (None, None) => Err(VqganError::Config(
                "the file has no VQGAN config and no taming tensor names; pass --preset".into(),
            )),
        }
    }

    /// Whether two configs build the same tensors and the same arithmetic.
    fn same_network(&self, other: &Self) -> bool {
        let attn = |c: &Self| (0..c.ch_mult.len()).map(|l| c.attends_at(l)).collect::<Vec<_>>();
        self.ch == other.ch
            && self.ch_mult == other.ch_mult
            && self.num_res_blocks == other.num_res_blocks
            && attn(self) == attn(other)
            && self.z_channels == other.z_channels
            && self.double_z == other.double_z
            && self.in_channels == other.in_channels
            && self.embed_dim == other.embed_dim
            && self.n_embed == other.n_embed
    }

    /// A one-line description (`ch 128, ch_mult [1, 2, 2, 4], ...`).
    pub fn summary(&self) -> String {
        format!(
            "ch {}, ch_mult {:?}, {} res blocks, attn at {:?}, z {}, codebook {}x{}",
            self.ch,
            self.ch_mult,
            self.num_res_blocks,
            self.attn_resolutions,
            self.z_channels,
            self.n_embed,
            self.embed_dim
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_give_the_paper_latents() {
        for (name, f, z) in [("f2", 2, 2), ("f4", 4, 3), ("f8", 8, 4), ("f16", 16, 8)] {
            let c = VqganConfig::preset(name).unwrap();
            c.validate().unwrap();
            assert_eq!((c.factor(), c.z_channels), (f, z), "{name}");
        }
        let f8 = VqganConfig::preset("f8").unwrap();
        // attention at resolution 16 is never reached at f=8 (levels are 256..32)
        assert!((0..4).all(|l| !f8.attends_at(l)));
        let f16 = VqganConfig::preset("f16").unwrap();
        assert!(f16.attends_at(4) && !f16.attends_at(3));
        assert!(VqganConfig::preset("f3").is_err());
    }

    #[test]
    fn validate_refuses_channels_groupnorm_cannot_split() {
        let mut c = VqganConfig::preset("f8").unwrap();
        c.ch = 48;
        assert!(matches!(c.validate(), Err(VqganError::Config(m)) if m.contains("GroupNorm")));
        let mut c = VqganConfig::preset("f8").unwrap();
        c.resolution = 100;
        assert!(c.validate().is_err());
    }
}
