"""A VQGAN in the layout of taming-transformers' `VQModel`, written for this
project: the same modules, the same state-dict names, the same arithmetic, so
a taming checkpoint loads into it and `latent-he encode` reproduces it.

Encoder: conv_in, per resolution level `num_res_blocks` ResnetBlocks (with an
AttnBlock after each when the level's resolution is in `attn_resolutions`)
and a Downsample (pad right/bottom by one, 3x3 stride-2 conv) on every level
but the last; mid block (ResnetBlock, AttnBlock, ResnetBlock); GroupNorm,
swish, conv_out. Decoder: the mirror image with `num_res_blocks + 1` blocks a
level and nearest-neighbour Upsample + 3x3 conv. GroupNorm has 32 groups and
eps 1e-6; the nonlinearity is swish (x * sigmoid(x)); attention is one head
with 1x1 q/k/v/proj_out convolutions.
"""

import json

import torch
import torch.nn as nn
import torch.nn.functional as F

# The paper's configs (compression/configs/cxr_f{2,4,8,16}_vqgan.yaml). The
# reference document gives f=8 in full and, for f=2/4/16, the z_channels and
# the length of ch_mult; the multipliers chosen for those follow taming's
# own f=4/f=16 configs.
PRESETS = {
    "f2": dict(ch=128, ch_mult=[1, 2], num_res_blocks=2, attn_resolutions=[16], z_channels=2),
    "f4": dict(ch=128, ch_mult=[1, 2, 4], num_res_blocks=2, attn_resolutions=[16], z_channels=3),
    "f8": dict(ch=128, ch_mult=[1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], z_channels=4),
    "f16": dict(ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], z_channels=8),
}
COMMON = dict(double_z=False, in_channels=3, out_ch=3, resolution=256, embed_dim=256, n_embed=1024)


def preset(name, **overrides):
    """The config dict of a preset, with keys overridden."""
    cfg = dict(COMMON)
    cfg.update(PRESETS[name])
    cfg.update(overrides)
    return cfg


def normalize(channels):
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels, dropout=0.0):
        super().__init__()
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # b, hw, c
        k = k.reshape(b, c, hh * ww)  # b, c, hw
        w = torch.bmm(q, k) * (int(c) ** -0.5)  # b, hw(query), hw(key)
        w = F.softmax(w, dim=2)
        v = v.reshape(b, c, hh * ww)
        h = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels,
                 double_z=False, dropout=0.0, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        res = resolution
        block_in = ch
        for i, mult in enumerate(ch_mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, ch * mult, dropout))
                block_in = ch * mult
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, out_ch, resolution, z_channels,
                 dropout=0.0, **_):
        super().__init__()
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        up = []
        for i in reversed(range(len(ch_mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, ch * ch_mult[i], dropout))
                block_in = ch * ch_mult[i]
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            up.insert(0, level)
        self.up = nn.ModuleList(up)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook entry per position (taming's VectorQuantizer, beta 0.25)."""

    def __init__(self, n_embed, embed_dim, beta=0.25):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        self.beta = beta

    def forward(self, z):
        zp = z.permute(0, 2, 3, 1).contiguous()
        flat = zp.reshape(-1, zp.shape[-1])
        e = self.embedding.weight
        d = (flat ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * flat @ e.t()
        idx = d.argmin(1)
        zq = self.embedding(idx).view(zp.shape)
        loss = ((zq.detach() - zp) ** 2).mean() * self.beta + ((zq - zp.detach()) ** 2).mean()
        zq = zp + (zq - zp).detach()  # straight-through gradient
        return zq.permute(0, 3, 1, 2).contiguous(), loss, idx


class VQModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        self.encoder = Encoder(**cfg)
        self.decoder = Decoder(**cfg)
        z = cfg["z_channels"] * (2 if cfg.get("double_z") else 1)
        self.quant_conv = nn.Conv2d(z, cfg["embed_dim"], 1)
        self.quantize = VectorQuantizer(cfg["n_embed"], cfg["embed_dim"])
        self.post_quant_conv = nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)

    def encode(self, x):
        """The encoder output before quant_conv: the classifier's latent."""
        return self.encoder(x)

    def quantize_latent(self, h):
        """q(quant_conv(h)): the codebook vectors, embed_dim channels."""
        zq, loss, _ = self.quantize(self.quant_conv(h))
        return zq, loss

    def decode_quantized(self, zq):
        return self.decoder(self.post_quant_conv(zq))

    def forward(self, x):
        zq, loss = self.quantize_latent(self.encode(x))
        return self.decode_quantized(zq), loss


def save(model, path, note=""):
    """Writes the state dict as float32 safetensors with the config in the
    metadata (`vqgan_config`, JSON), which `latent-he encode` reads."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "vqgan_config": json.dumps(model.cfg, sort_keys=True)}
    if note:
        meta["note"] = note
    save_file(state, path, metadata=meta)


def load(path):
    """The VQModel a `save`d safetensors file holds (its config from the
    `vqgan_config` metadata), in eval mode on the CPU."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if "vqgan_config" not in meta:
        raise SystemExit(f"{path}: no vqgan_config in the safetensors metadata (not a latent-he VQGAN export)")
    model = VQModel(json.loads(meta["vqgan_config"]))
    model.load_state_dict(load_file(path))
    return model.eval()
