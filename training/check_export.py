"""Checks that an exported classifier gives the same logits in Rust as in PyTorch.

Runs `latent-he predict --model M --input X --json` and compares its logits
with PyTorch's eval-mode logits of the model rebuilt from the same file (the
metadata keys arch/se/classes/latent pick the architecture): once with the
stored float32 weights in float64 (the exact reference for Rust's f64 path)
and once in float32 (the model as trained). Exits 1 on a mismatch.

    python training/check_export.py --bin target/release/latent-he \
        --model m.safetensors --input latents.npy --count 8
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402


def load_model(path):
    """The model described by the file's metadata, with its weights, in eval mode; and the metadata."""
    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
    missing = [k for k in ("arch", "se", "classes", "latent") if k not in meta]
    if missing:
        raise SystemExit(f"error: {path}: metadata lacks {', '.join(missing)}")
    classes = meta["classes"].split(",")
    latent = tuple(int(d) for d in meta["latent"].lower().split("x"))
    se = meta["se"].strip().lower() in ("true", "1", "yes")
    model = models.build(meta["arch"], se, len(classes), latent)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    model.load_state_dict(state, strict=True)
    return model.eval(), meta, classes, latent


def rust_logits(binary, model_path, input_path, precision):
    """Classes and logits printed by `latent-he predict --json`."""
    cmd = [binary, "predict", "--model", model_path, "--input", input_path, "--json", "--precision", precision]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {run.returncode}:\n{run.stderr.strip()}")
    out = json.loads(run.stdout)
    return out["classes"], np.array(out["logits"], dtype=np.float64)


@torch.no_grad()
def torch_logits(model, x, dtype):
    m = model.to(dtype)
    out = m(torch.from_numpy(x).to(dtype)).double().numpy()
    model.float()
    return out


def worst(a, b):
    """max |a - b| and max |a - b| / (1 + |b|)."""
    d = np.abs(a - b)
    return float(d.max()), float((d / (1.0 + np.abs(b))).max())


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare latent-he predict's logits with PyTorch's for one exported model.")
    p.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "latent-he"),
                   help="the latent-he binary (default: target/release/latent-he)")
    p.add_argument("--model", required=True, help="exported .safetensors (with arch/se/classes/latent metadata)")
    p.add_argument("--input", required=True, help="latents .npy, C x H x W or B x C x H x W")
    p.add_argument("--count", type=int, default=8, help="compare the first COUNT latents (default 8)")
    p.add_argument("--precision", choices=["f64", "f32"], default="f64", help="Rust's arithmetic (default f64)")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="largest allowed |rust - torch| / (1 + |torch|) (default 1e-5; raise it for --precision f32)")
    args = p.parse_args(argv)

    model, meta, classes, latent = load_model(args.model)
    x = np.load(args.input)
    if x.ndim == 3:
        x = x[None]
    x = np.ascontiguousarray(x[: args.count], dtype=np.float32)
    if x.shape[1:] != latent:
        raise SystemExit(f"error: input latents are {x.shape[1:]}, the model expects {latent}")

    with tempfile.TemporaryDirectory() as tmp:
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, x)
        rust_classes, rust = rust_logits(args.bin, args.model, xin, args.precision)

    ok = True
    if rust_classes != classes:
        print(f"MISMATCH: Rust reads classes {rust_classes}, the metadata says {classes}")
        ok = False
    ref64 = torch_logits(model, x, torch.float64)
    ref32 = torch_logits(model, x, torch.float32)
    if rust.shape != ref64.shape:
        raise SystemExit(f"error: Rust gave logits of shape {rust.shape}, PyTorch {ref64.shape}")
    abs64, rel64 = worst(rust, ref64)
    abs32, rel32 = worst(rust, ref32)
    print(f"model {args.model}: {meta['arch']} se={meta['se']} classes={len(classes)} latent={meta['latent']}")
    print(f"{len(x)} inputs, logits in [{ref64.min():.4f}, {ref64.max():.4f}], Rust precision {args.precision}")
    print(f"max |rust - torch float64| = {abs64:.3e} (relative {rel64:.3e})")
    print(f"max |rust - torch float32| = {abs32:.3e} (relative {rel32:.3e})")
    # float64 is the exact reference; float32 PyTorch differs from it by its own rounding.
    ref32_err = worst(ref32, ref64)[1]
    if rel64 > args.tol or rel32 > args.tol + ref32_err:
        print(f"MISMATCH: tolerance {args.tol:.1e} exceeded")
        ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
