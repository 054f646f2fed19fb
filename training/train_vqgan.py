"""Trains a VQGAN (taming layout, `vqgan_model.py`) on a folder of chest
X-rays and exports it for `latent-he encode`.

Loss, as the paper's equation 3: reconstruction ||x - x_hat||^2, the GAN
terms log D(x) + log(1 - D(x_hat)) of a PatchGAN discriminator (switched on
after --disc-start steps; the generator uses the non-saturating form), and
the codebook loss L_vq (codebook + 0.25 * commitment). No perceptual loss.

    python training/train_vqgan.py DATA --preset f8 --ch 32 --num-res-blocks 1 \
        --steps 2000 --crop 128 --out models/vqgan_f8.safetensors

DATA is a folder of images (PNG/JPEG, searched recursively), or an NIH-style
folder with `images/` and `train_val_list.txt` (then only the listed images
are used for training and `test_list.txt` for validation). Preprocessing is
the paper's: grey to 3 channels, the smaller side resized to 256 (OpenCV
INTER_LINEAR when cv2 is installed, else PIL bilinear), centre crop 256,
x / 127.5 - 1; training then takes random --crop x --crop windows (the
network is fully convolutional) and random horizontal flips are NOT used
(laterality matters in a chest X-ray).

Writes OUT (safetensors with the config and a note in the metadata) and
OUT.json (the run: data, steps, losses, validation PSNR).
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vqgan_model  # noqa: E402

IMAGE_EXT = (".png", ".jpg", ".jpeg")


def load_image(path, size=256):
    """The paper's preprocessing up to the crop: a size x size uint8 grey
    image (`to_input` makes the network's 3-channel [-1, 1] input)."""
    try:
        import cv2

        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        h, w = img.shape
        scale = size / min(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        from PIL import Image

        im = Image.open(path).convert("L")
        w, h = im.size
        scale = size / min(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        if (nh, nw) != (h, w):
            im = im.resize((nw, nh), Image.BILINEAR)
        img = np.asarray(im)
    h, w = img.shape
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def to_input(grey):
    """uint8 grey images (B x H x W) -> B x 3 x H x W float32 in [-1, 1]."""
    x = torch.from_numpy(np.asarray(grey)).float() / 127.5 - 1.0
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def list_images(root):
    """(train, validation) image paths."""
    listed = os.path.join(root, "train_val_list.txt")
    if os.path.exists(listed):
        def read(name):
            path = os.path.join(root, name)
            if not os.path.exists(path):
                return []
            with open(path) as f:
                return [os.path.join(root, "images", line.strip()) for line in f if line.strip()]
        return read("train_val_list.txt"), read("test_list.txt")
    files = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if p.lower().endswith(IMAGE_EXT))
    n_val = max(1, len(files) // 20)
    return files[n_val:], files[:n_val]


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (as taming's NLayerDiscriminator): strided 4x4
    convolutions, batch norm, leaky ReLU, one logit per patch."""

    def __init__(self, in_channels=3, ch=64, layers=3):
        super().__init__()
        seq = [nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(ch * prev, ch * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ch * mult),
                    nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ch * mult, 1, 4, 1, 1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x)


def psnr(x, y):
    """PSNR in dB of images in [-1, 1] mapped to 8 bits, per image."""
    a = ((x.clamp(-1, 1) + 1) * 127.5).round()
    b = ((y.clamp(-1, 1) + 1) * 127.5).round()
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0 ** 2 / mse)


def evaluate(model, images, batch):
    model.eval()
    values = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = to_input(np.stack(images[i:i + batch]))
            recon, _ = model(x)
            values += psnr(recon, x).tolist()
    model.train()
    return float(np.mean(values)) if values else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--preset", default="f8", choices=sorted(vqgan_model.PRESETS))
    ap.add_argument("--ch", type=int, help="override the preset's ch (a multiple of 32)")
    ap.add_argument("--ch-mult", help="override ch_mult, comma-separated")
    ap.add_argument("--num-res-blocks", type=int)
    ap.add_argument("--embed-dim", type=int)
    ap.add_argument("--n-embed", type=int)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256, help="random training window (multiple of the factor)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--disc-start", type=int, default=None, help="step the GAN terms start (default: half way)")
    ap.add_argument("--disc-weight", type=float, default=0.1)
    ap.add_argument("--max-images", type=int, default=None, help="use at most this many training images")
    ap.add_argument("--seed", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-note", default="", help="what the data is, for the model card")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    if args.ch:
        overrides["ch"] = args.ch
    if args.ch_mult:
        overrides["ch_mult"] = [int(v) for v in args.ch_mult.split(",")]
    for key in ("num_res_blocks", "embed_dim", "n_embed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    cfg = vqgan_model.preset(args.preset, **overrides)

    train_files, val_files = list_images(args.data)
    if args.max_images:
        train_files = train_files[:args.max_images]
    if not train_files:
        sys.exit(f"{args.data}: no training images")
    t0 = time.time()
    train = [load_image(p) for p in train_files]
    val = [load_image(p) for p in val_files[:64]]
    print(f"{len(train)} training and {len(val)} validation images loaded in {time.time() - t0:.1f} s", flush=True)

    device = torch.device(args.device)
    model = vqgan_model.VQModel(cfg).to(device)
    disc = PatchDiscriminator().to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    disc_start = args.disc_start if args.disc_start is not None else args.steps // 2
    rng = np.random.default_rng(args.seed)
    history = []
    t0 = time.time()
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(train), args.batch_size)
        crops = []
        for i in idx:
            img = train[i]
            top, left = rng.integers(0, img.shape[0] - args.crop + 1), rng.integers(0, img.shape[1] - args.crop + 1)
            crops.append(img[top:top + args.crop, left:left + args.crop])
        x = to_input(np.stack(crops)).to(device)
        recon, vq_loss = model(x)
        rec_loss = F.mse_loss(recon, x)
        gan_on = step >= disc_start
        loss = rec_loss + vq_loss
        if gan_on:
            # non-saturating generator term of log(1 - D(x_hat))
            loss = loss + args.disc_weight * F.softplus(-disc(recon)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        d_loss = torch.tensor(0.0)
        if gan_on:
            # discriminator: maximise log D(x) + log(1 - D(x_hat))
            d_loss = F.softplus(-disc(x)).mean() + F.softplus(disc(recon.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        if step % 50 == 0 or step == args.steps:
            rate = step / (time.time() - t0)
            entry = {"step": step, "rec": rec_loss.item(), "vq": vq_loss.item(), "disc": d_loss.item()}
            history.append(entry)
            print(f"step {step}/{args.steps}: rec {entry['rec']:.5f} vq {entry['vq']:.5f} "
                  f"disc {entry['disc']:.4f} ({rate:.2f} steps/s, ETA {(args.steps - step) / rate / 60:.1f} min)",
                  flush=True)
    model = model.cpu()
    # the mid-block attention holds (tokens)^2 scores per image: keep a batch's under about 1 GB
    tokens = (256 // 2 ** (len(cfg["ch_mult"]) - 1)) ** 2
    val_psnr = evaluate(model, val, max(1, min(8, 2 ** 28 // tokens ** 2)))
    print(f"validation PSNR {val_psnr:.2f} dB over {len(val)} images", flush=True)
    note = (f"trained by latent-he training/train_vqgan.py on {len(train)} images ({args.data_note or args.data}); "
            f"{args.steps} steps, batch {args.batch_size}, crop {args.crop}; validation PSNR {val_psnr:.2f} dB")
    vqgan_model.save(model, args.out, note=note)
    with open(args.out + ".json", "w") as f:
        json.dump({"config": cfg, "data": args.data, "data_note": args.data_note, "train_images": len(train),
                   "val_images": len(val), "steps": args.steps, "batch_size": args.batch_size, "crop": args.crop,
                   "lr": args.lr, "disc_start": disc_start, "disc_weight": args.disc_weight, "seed": args.seed,
                   "val_psnr_db": val_psnr, "seconds": time.time() - t0, "history": history}, f, indent=1)
    print(json.dumps({"out": args.out, "val_psnr_db": val_psnr}))


if __name__ == "__main__":
    main()
