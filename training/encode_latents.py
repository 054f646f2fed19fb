"""Encodes the images of an NIH-style folder with a VQGAN in PyTorch, on a
GPU when one is at hand, into the directory `train.py` reads: the same
result as `latent-he encode` followed by `nih_latents.py`, for training runs
where the Rust CPU encoder is too slow (the f=2 VQGAN's mid-block attention
spans 128 x 128 positions: about 1.2 s an image on 2 CPU cores).

    python training/encode_latents.py --root synth10k --vqgan models/vqgan_f2.safetensors \
        --split synth10k/train_val_list.txt --out latents_train --device cuda

Same preprocessing (`train_vqgan.load_image`) and the same arithmetic
(`vqgan_model`), in float32 with TF32 switched off, so the latents agree
with `latent-he encode`'s to float rounding (`--check Z.npy --check-json
Z.json` measures the largest difference against an encode output for the
images both hold).
"""

import argparse
import json
import os
import time

import numpy as np
import torch

import nih_latents
import train_vqgan
import vqgan_model


def encode(model, paths, batch_size, device):
    """B x C x H x W float32 latents (the encoder output, before quant_conv)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            grey = np.stack([train_vqgan.load_image(p) for p in paths[start:start + batch_size]])
            out.append(model.encode(train_vqgan.to_input(grey).to(device)).float().cpu().numpy())
    return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="NIH-style folder: images/, Data_Entry_2017.csv")
    ap.add_argument("--vqgan", required=True, help="a VQGAN safetensors file (train_vqgan.py's export)")
    ap.add_argument("--split", help="image names to encode, one a line (all labelled images when not given)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, help="only the first N images of the split")
    ap.add_argument("--check", help="an .npy `latent-he encode` wrote, to compare with")
    ap.add_argument("--check-json", help="that encode's --json output (its `files` list)")
    args = ap.parse_args(argv)
    if bool(args.check) != bool(args.check_json):
        ap.error("--check and --check-json go together")

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    labels = nih_latents.read_labels(args.root)
    names = nih_latents.read_split(args.split) if args.split else sorted(labels)
    names = names[:args.limit] if args.limit else names
    model = vqgan_model.load(args.vqgan).to(device)
    t0 = time.time()
    z = encode(model, [os.path.join(args.root, "images", n) for n in names], args.batch_size, device)
    seconds = time.time() - t0
    nih_latents.write_latents_dir(args.out, z, names, labels)
    report = {"out": args.out, "samples": len(names), "latent": list(z.shape[1:]), "seconds": seconds,
              "device": str(device)}
    if args.check:
        with open(args.check_json) as f:
            files = [os.path.basename(p) for p in json.load(f)["files"]]
        theirs = np.load(args.check, mmap_mode="r")
        index = {n: i for i, n in enumerate(names)}
        both = [(index[n], i) for i, n in enumerate(files) if n in index]
        if not both:
            raise SystemExit("--check: no image in common")
        diff = max(float(np.abs(z[a] - theirs[b]).max()) for a, b in both)
        report["check"] = {"images": len(both), "max_abs_diff": diff, "max_abs_latent": float(np.abs(z).max())}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
