"""Converts a taming-transformers / PyTorch Lightning VQGAN checkpoint (.ckpt,
the state dict under `state_dict`) into the safetensors file `latent-he
encode --vqgan` reads: the model's tensors under taming's names, float32,
with the network's config in the metadata (`vqgan_config`, JSON).

    python training/convert_vqgan.py model.ckpt --config cxr_f8_vqgan.yaml --out vqgan_f8.safetensors
    python training/convert_vqgan.py model.ckpt --preset f8 --out vqgan_f8.safetensors

The config comes from the taming YAML (`model.params.ddconfig`, `embed_dim`,
`n_embed`; needs PyYAML) or from a preset name. The discriminator and the
perceptual loss (`loss.*`) are dropped. The converted tensors are checked
against the config by building `vqgan_model.VQModel` and loading them
strictly, so a file that converts is one `latent-he` can load.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vqgan_model  # noqa: E402

KEEP = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")
DDCONFIG_KEYS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "double_z",
                 "in_channels", "out_ch", "resolution")


def config_from_yaml(path):
    import yaml  # PyYAML; only needed for this option

    with open(path) as f:
        doc = yaml.safe_load(f)
    params = doc["model"]["params"]
    dd = params["ddconfig"]
    cfg = {k: dd[k] for k in DDCONFIG_KEYS if k in dd}
    cfg["ch_mult"] = list(cfg["ch_mult"])
    cfg["attn_resolutions"] = list(cfg.get("attn_resolutions", []))
    cfg["embed_dim"] = params["embed_dim"]
    cfg["n_embed"] = params["n_embed"]
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", help="taming / Lightning checkpoint (.ckpt or a plain state-dict .pt)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the taming YAML the checkpoint was trained with")
    src.add_argument("--preset", choices=sorted(vqgan_model.PRESETS), help="one of the paper's configs")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--note", default="", help="free text stored in the metadata (data, training)")
    args = ap.parse_args(argv)

    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        sys.exit(f"{args.ckpt}: no state dict found (expected a dict, or one under 'state_dict')")
    state = {k: v for k, v in state.items() if k.startswith(KEEP) and torch.is_tensor(v)}
    if not state:
        sys.exit(f"{args.ckpt}: no encoder/decoder/quantizer tensors (names must start with {KEEP})")

    cfg = config_from_yaml(args.config) if args.config else vqgan_model.preset(args.preset)
    model = vqgan_model.VQModel(cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        sys.exit(f"checkpoint does not match the config: {e}")
    if unexpected or (missing and any(k.startswith("encoder.") for k in missing)):
        sys.exit(f"checkpoint does not match the config: missing {missing[:8]}, unexpected {unexpected[:8]}")
    if missing:
        print(f"note: no decoder in the checkpoint ({len(missing)} tensors); the file will only encode")
        model.decoder = None
        model.post_quant_conv = None
    vqgan_model.save(model, args.out, note=args.note or f"converted from {os.path.basename(args.ckpt)}")
    print(json.dumps({"out": args.out, "tensors": len(state), "config": cfg}))


if __name__ == "__main__":
    main()
