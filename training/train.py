"""Trains one of the paper's classifiers on VQGAN latents and exports it for `latent-he`.

The recipe is the reference's (github.com/jongdory/Latent-HE, `main.py` and
`configs/f8/*.yaml`, and the paper's "Implementation Details"): multi-label
BCEWithLogitsLoss, Adam with amsgrad, learning rate 2e-4, weight decay 5e-4,
200 epochs, batch 128, no augmentation, no input normalisation (the latents go
in as the encoder gives them). The reference's bugs are fixed:

* the best checkpoint is chosen on a validation split held out from the
  training data (deterministic by --seed), not on the test set;
* every polynomial activation starts at models.POLY_INIT (alpha=0.1, beta=0.5,
  c=0) instead of 0, which made every activation output 0;
* per-class F1 thresholds the sigmoid probabilities at 0.5 (the reference
  passed the predictions as the threshold); AUROC skips classes whose
  validation labels are all 0 or all 1 instead of failing;
* the SE gates' cubic approxSigmoid is kept on the range where it behaves
  like a sigmoid: a penalty on its inputs beyond --sigmoid-range (see
  RangePenalty). Without it the cubic learns gates far above 1, each SE block
  amplifies the next one's quadratic activations, and in eval mode (running
  BatchNorm statistics) the values overflow to inf within two epochs.

Two options for latents with heavy tails (the f=4 VQGAN's reach |z| = 9 where
f=8's stay near 5): --input-clip C clamps every latent to +-C before the
model sees it and records C in the exported metadata (`input_clip`), so that
`latent-he` clamps identically before predicting or encrypting; --act-range B
penalises the inputs of every quadratic activation beyond +-B, as
--sigmoid-range does for the SE gates. Without them ResNet20 on f=4 latents
trains (finite training loss) while its eval-mode outputs overflow: a rare
large input, squared through nineteen activations with running BatchNorm
statistics, reaches 1e6 and beyond.

Inputs: latents as a .npy array B x C x H x W (float32) and a labels CSV (a
header of class names, then one row of 0/1 per sample, in the latents' order),
or a directory holding `latents.npy` and `labels.csv`.

Output: OUT.safetensors (the state dict of the epoch with the best validation
macro AUROC, float32, with the metadata keys arch/se/classes/latent that
`latent-he predict` reads) and OUT.json (a model card), both rewritten each
time the validation improves, so an interrupted run keeps its best epoch.

    python training/train.py DATA_DIR --arch resnet20 --out resnet20.safetensors
    python training/train.py X.npy --labels y.csv --arch lenet5 --se --epochs 50 --out m.safetensors
"""

import argparse
import copy
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

ARCHS = ["lenet5", "vgg5", "hefnet", "resnet20", "resnet32", "resnet44", "resnet56"]
THRESHOLD = 0.5
"""F1 predicts a class when its sigmoid probability is >= THRESHOLD (as `latent-he metrics`)."""

RESERVED_CLASS_LISTS = {"nih15", "nih", "chexpert14", "chexpert"}
"""Names the Rust side expands to a whole class list when they are the entire `classes` value."""


# ----------------------------------------------------------------------------- data


def resolve_inputs(data, labels):
    """(latents path, labels path) from the positional DATA argument and --labels."""
    if os.path.isdir(data):
        if labels is not None:
            raise SystemExit("error: give either a directory or a .npy file with --labels, not both")
        return os.path.join(data, "latents.npy"), os.path.join(data, "labels.csv")
    if labels is None:
        raise SystemExit(f"error: {data} is a file; pass the labels CSV with --labels")
    return data, labels


def read_labels(path):
    """Reads a labels CSV: returns (class names, N x K float32 array of 0/1)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(field.strip() for field in r)]
    if not rows:
        raise SystemExit(f"error: {path}: empty file (expected a header of class names)")
    classes = [name.strip() for name in rows[0]]
    check_class_names(classes, path)
    values = np.zeros((len(rows) - 1, len(classes)), dtype=np.float32)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(classes):
            raise SystemExit(f"error: {path}: data row {i + 1} has {len(row)} fields, the header {len(classes)}")
        for j, field in enumerate(row):
            try:
                v = float(field)
            except ValueError:
                raise SystemExit(f"error: {path}: data row {i + 1}, class {classes[j]!r}: {field!r} is not 0 or 1")
            if v not in (0.0, 1.0):
                raise SystemExit(f"error: {path}: data row {i + 1}, class {classes[j]!r}: {field!r} is not 0 or 1")
            values[i, j] = v
    return classes, values


def check_class_names(classes, where):
    """Refuses names the exported `classes` metadata could not carry (comma-joined in Rust)."""
    if any(not c for c in classes):
        raise SystemExit(f"error: {where}: a class name is empty")
    if any("," in c for c in classes):
        raise SystemExit(f"error: {where}: class names may not contain commas (the metadata joins them with ',')")
    if len(set(classes)) != len(classes):
        raise SystemExit(f"error: {where}: a class name appears twice")
    if len(classes) == 1 and classes[0].lower() in RESERVED_CLASS_LISTS:
        raise SystemExit(f"error: {where}: a lone class may not be named {classes[0]!r} (reserved)")


def load_data(latents_path, labels_path):
    """Memory-maps the latents and reads the labels; checks that they agree.

    Returns (latents N x C x H x W, labels N x K, class names).
    """
    latents = np.load(latents_path, mmap_mode="r")
    if latents.ndim != 4:
        raise SystemExit(f"error: {latents_path}: shape {latents.shape} is not B x C x H x W")
    if latents.dtype not in (np.float32, np.float64):
        raise SystemExit(f"error: {latents_path}: dtype {latents.dtype}, expected float32")
    classes, labels = read_labels(labels_path)
    if len(labels) != len(latents):
        raise SystemExit(f"error: {len(latents)} latents in {latents_path} but {len(labels)} label rows in {labels_path}")
    return latents, labels, classes


def split_indices(n, val_fraction, seed):
    """Deterministic (train, validation) index arrays: a seeded permutation, the
    first round(n * val_fraction) samples (at least 1) held out."""
    if not 0.0 < val_fraction < 1.0:
        raise SystemExit("error: --val-fraction must lie strictly between 0 and 1")
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise SystemExit(f"error: {n} samples leave nothing to train on with --val-fraction {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def batches(latents, labels, indices, batch_size, generator=None, clip=None):
    """Yields (x, y) float32 tensors; shuffled with `generator` when one is given;
    x clamped to +-clip when clip is not None."""
    if generator is not None:
        indices = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        x = torch.from_numpy(np.ascontiguousarray(latents[idx], dtype=np.float32))
        if clip is not None:
            x = x.clamp(-clip, clip)
        y = torch.from_numpy(labels[idx])
        yield x, y


# ----------------------------------------------------------------------------- metrics


def multilabel_metrics(labels, probs, classes):
    """AUROC and F1, per class and micro/macro/weighted, as `latent-he metrics` defines them.

    F1: prediction = probs >= 0.5, sklearn f1_score per class with
    zero_division=0; macro over all classes, micro pooled, weighted by positives.
    AUROC: classes whose labels are all 0 or all 1 are skipped (None) and left
    out of every average; micro is the AUROC of the kept classes' pooled
    (label, score) pairs; None overall when every class is skipped.
    """
    labels = np.asarray(labels, dtype=np.int64)
    pred = (np.asarray(probs) >= THRESHOLD).astype(np.int64)
    positives = labels.sum(axis=0)
    n, k = labels.shape
    f1_per = f1_score(labels, pred, average=None, zero_division=0)
    f1 = {
        "micro": float(f1_score(labels, pred, average="micro", zero_division=0)),
        "macro": float(np.mean(f1_per)),
        "weighted": float(f1_score(labels, pred, average="weighted", zero_division=0)) if positives.sum() else 0.0,
    }
    kept = [j for j in range(k) if 0 < positives[j] < n]
    auroc_per = [None] * k
    for j in kept:
        auroc_per[j] = float(roc_auc_score(labels[:, j], probs[:, j]))
    auroc = None
    if kept:
        w = positives[kept].astype(np.float64)
        vals = np.array([auroc_per[j] for j in kept])
        auroc = {
            "micro": float(roc_auc_score(labels[:, kept].ravel(), np.asarray(probs)[:, kept].ravel())),
            "macro": float(vals.mean()),
            "weighted": float((vals * w).sum() / w.sum()),
        }
    return {
        "samples": int(n),
        "auroc": auroc,
        "auroc_per_class": dict(zip(classes, auroc_per)),
        "f1": f1,
        "f1_per_class": dict(zip(classes, (float(v) for v in f1_per))),
        "skipped_classes": [classes[j] for j in range(k) if j not in kept],
        "positives": dict(zip(classes, (int(p) for p in positives))),
    }


# ----------------------------------------------------------------------------- training


class RangePenalty:
    """Keeps polynomial activations on the input range they were meant for.

    Watches the input of every ApproxSigmoid (the SE gates' cubic) with bound
    `sigmoid_bound`, and of every PolyAct (the quadratic activations) with
    bound `act_bound` when that is not None. In training mode it collects
    mean(relu(|x| - bound)^2) per watched module, which `take` sums and
    clears; in eval mode it records the largest |x| seen per kind
    (`max_abs_eval["sigmoid"]`, `max_abs_eval["act"]`), the input ranges an
    encrypted evaluation of the exported model must expect. A model without
    watched modules has a zero penalty."""

    def __init__(self, model, sigmoid_bound, act_bound=None):
        self.terms = []
        self.max_abs_eval = {"sigmoid": 0.0, "act": 0.0}
        for module in model.modules():
            if isinstance(module, models.ApproxSigmoid):
                module.register_forward_pre_hook(self._observer("sigmoid", sigmoid_bound))
            elif isinstance(module, models.PolyAct):
                module.register_forward_pre_hook(self._observer("act", act_bound))

    def _observer(self, kind, bound):
        def observe(module, inputs):
            x = inputs[0]
            if module.training:
                if bound is not None:
                    self.terms.append(torch.relu(x.abs() - bound).pow(2).mean())
            else:
                self.max_abs_eval[kind] = max(self.max_abs_eval[kind], float(x.detach().abs().max()))

        return observe

    def reset_eval(self):
        """Forgets the eval-mode maxima (call before each validation pass)."""
        self.max_abs_eval = {"sigmoid": 0.0, "act": 0.0}

    def take(self):
        """The summed penalty of the forward passes since the last call."""
        total = sum(self.terms) if self.terms else torch.zeros(())
        self.terms = []
        return total


def train_epoch(model, optimizer, loss_fn, latents, labels, indices, batch_size, generator, device,
                penalty, penalty_weight, clip):
    """One pass over the training indices; returns the mean classification loss per sample
    (the range penalty, weighted, is added to what is minimised but not to what is returned)."""
    model.train()
    total, seen = 0.0, 0
    for x, y in batches(latents, labels, indices, batch_size, generator, clip):
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        objective = loss + penalty_weight * penalty.take()
        if not torch.isfinite(objective):
            raise SystemExit(
                "error: the training loss is not finite (the polynomial activations diverged); "
                "try a lower --lr"
            )
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
        total += loss.item() * len(x)
        seen += len(x)
    return total / seen


@torch.no_grad()
def evaluate(model, loss_fn, latents, labels, indices, batch_size, device, classes, clip):
    """Eval-mode loss and metrics on the given indices."""
    model.eval()
    probs, total = [], 0.0
    for x, y in batches(latents, labels, indices, batch_size, clip=clip):
        logits = model(x.to(device)).double()
        total += loss_fn(logits, y.to(device).double()).item() * len(x)
        probs.append(torch.sigmoid(logits).cpu().numpy())
    probs = np.concatenate(probs)
    if not np.all(np.isfinite(probs)):
        return total / len(indices), None
    return total / len(indices), multilabel_metrics(labels[indices], probs, classes)


def selection_key(val_loss, metrics):
    """Larger is better: validation macro AUROC, then lower validation loss
    (the loss alone decides while every class lacks positives or negatives)."""
    auroc = metrics["auroc"]["macro"] if metrics and metrics["auroc"] else -math.inf
    loss = val_loss if math.isfinite(val_loss) else math.inf
    return (auroc, -loss)


def resolve_device(name):
    """The torch device for --device (cpu, cuda, cuda:N)."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but CUDA is not available")
    return device


def fmt(v):
    return "n/a" if v is None else f"{v:.4f}"


def train(args):
    """Runs the whole job: data, split, training, selection, export, model card."""
    latents_path, labels_path = resolve_inputs(args.data, args.labels)
    latents, labels, classes = load_data(latents_path, labels_path)
    latent = tuple(int(d) for d in latents.shape[1:])
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    model = models.build(args.arch, args.se, len(classes), latent)
    try:
        model.eval()(torch.zeros((1,) + latent))
    except Exception as e:  # the architecture does not fit this latent
        raise SystemExit(f"error: {args.arch} cannot run on a {'x'.join(map(str, latent))} latent: {e}")
    if args.init:
        from safetensors.torch import load_file

        try:
            model.load_state_dict(load_file(args.init), strict=True)
        except Exception as e:  # missing file, another architecture, foreign tensors
            raise SystemExit(f"error: --init {args.init}: {e}")
    model.to(device)

    train_idx, val_idx = split_indices(len(latents), args.val_fraction, args.seed)
    print(
        f"{len(latents)} samples of {'x'.join(map(str, latent))}, {len(classes)} classes; "
        f"train {len(train_idx)}, validation {len(val_idx)}; {args.arch}{' +SE' if args.se else ''} "
        f"({sum(p.numel() for p in model.parameters())} parameters) on {device}",
        flush=True,
    )
    loss_fn = nn.BCEWithLogitsLoss()
    # The sigmoid penalty's weight scales the whole penalty; with --act-range the
    # activations' terms share it (both are off when the weight is 0).
    penalty = RangePenalty(model, args.sigmoid_range, args.act_range)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, amsgrad=True)
    shuffle = torch.Generator().manual_seed(args.seed)

    best = None  # (key, epoch, state dict, val loss, metrics)
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        train_loss = train_epoch(model, optimizer, loss_fn, latents, labels, train_idx, args.batch_size, shuffle, device,
                                 penalty, args.range_weight, args.input_clip)
        penalty.reset_eval()
        val_loss, metrics = evaluate(model, loss_fn, latents, labels, val_idx, args.batch_size, device, classes,
                                     args.input_clip)
        gate_range, act_range = penalty.max_abs_eval["sigmoid"], penalty.max_abs_eval["act"]
        auroc = metrics["auroc"]["macro"] if metrics and metrics["auroc"] else None
        f1 = metrics["f1"]["macro"] if metrics else None
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auroc_macro": auroc, "val_f1_macro": f1,
             "val_sigmoid_input_max_abs": gate_range if args.se else None, "val_act_input_max_abs": act_range}
        )
        key = selection_key(val_loss, metrics)
        improved = metrics is not None and (best is None or key > best[0])
        if improved:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = (key, epoch, state, val_loss, metrics)
            # Written as it improves: an interrupted run keeps its best epoch so far.
            export(copy.deepcopy(model).cpu(), args, classes, latent,
                   model_card(args, classes, latent, latents_path, labels_path, labels, train_idx, val_idx,
                              epoch, val_loss, metrics, history))
        print(
            f"epoch {epoch}/{args.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
            f"val AUROC macro {fmt(auroc)}, val F1 macro {fmt(f1)}"
            + (f", SE gate inputs within +-{gate_range:.3g}" if args.se else "")
            + f", activation inputs within +-{act_range:.3g}"
            + f" ({time.time() - t0:.1f} s)"
            + (" *" if improved else ""),
            flush=True,
        )
    if best is None:
        raise SystemExit("error: no epoch gave finite validation outputs; nothing exported")

    _, best_epoch, state, best_val_loss, best_metrics = best
    model.load_state_dict(state)
    model.cpu()
    card = model_card(args, classes, latent, latents_path, labels_path, labels, train_idx, val_idx,
                      best_epoch, best_val_loss, best_metrics, history)
    out, card_path = export(model, args, classes, latent, card)
    print(f"best epoch {best_epoch}: val AUROC macro {fmt(card['validation']['auroc_macro'])}, "
          f"F1 macro {fmt(card['validation']['f1_macro'])}")
    print(f"wrote {out} and {card_path}")
    return card


def export(model, args, classes, latent, card):
    """Writes the weights to --out and the card beside it, each through a
    temporary file and a rename (a reader sees the old pair or the new one);
    returns both paths."""
    out = args.out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    models.export_safetensors(model, out + ".tmp", args.arch, args.se, classes, latent, torch.float32, args.input_clip)
    os.replace(out + ".tmp", out)
    card_path = os.path.splitext(out)[0] + ".json"
    with open(card_path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=2)
        fh.write("\n")
    os.replace(card_path + ".tmp", card_path)
    return out, card_path


def model_card(args, classes, latent, latents_path, labels_path, labels, train_idx, val_idx,
               best_epoch, best_val_loss, metrics, history):
    """The JSON written next to the weights: what was trained on what, and how well it validates."""
    note = args.data_note or ""
    return {
        "arch": args.arch,
        "se": bool(args.se),
        "classes": classes,
        "latent": list(latent),
        "weights": os.path.basename(args.out),
        "epochs": args.epochs,
        "best_epoch": best_epoch,
        "selection": "best validation macro AUROC (ties: lower validation loss)",
        "validation": {
            "samples": int(len(val_idx)),
            "loss": best_val_loss,
            "auroc_macro": metrics["auroc"]["macro"] if metrics["auroc"] else None,
            "auroc_micro": metrics["auroc"]["micro"] if metrics["auroc"] else None,
            "auroc_weighted": metrics["auroc"]["weighted"] if metrics["auroc"] else None,
            "auroc_per_class": metrics["auroc_per_class"],
            "auroc_skipped_classes": metrics["skipped_classes"],
            "f1_threshold": THRESHOLD,
            "f1_macro": metrics["f1"]["macro"],
            "f1_micro": metrics["f1"]["micro"],
            "f1_weighted": metrics["f1"]["weighted"],
            "f1_per_class": metrics["f1_per_class"],
            "positives_per_class": metrics["positives"],
            "sigmoid_input_max_abs": history[best_epoch - 1]["val_sigmoid_input_max_abs"],
            "act_input_max_abs": history[best_epoch - 1]["val_act_input_max_abs"],
        },
        "data": {
            "latents": os.path.abspath(latents_path),
            "labels": os.path.abspath(labels_path),
            "samples": int(len(labels)),
            "train_samples": int(len(train_idx)),
            "val_samples": int(len(val_idx)),
            "val_fraction": args.val_fraction,
            "positives_per_class": dict(zip(classes, (int(p) for p in labels.sum(axis=0)))),
            "note": note,
            "synthetic": bool(args.synthetic or "synthetic" in note.lower()),
        },
        "training": {
            "loss": "BCEWithLogitsLoss",
            "optimizer": "Adam (amsgrad)",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "device": str(args.device),
            "polynom_act_init": dict(zip(("alpha", "beta", "c"), models.POLY_INIT)),
            "init": os.path.abspath(args.init) if args.init else None,
            "sigmoid_range": args.sigmoid_range if args.se else None,
            "act_range": args.act_range,
            "range_weight": args.range_weight if (args.se or args.act_range is not None) else None,
            "input_clip": args.input_clip,
            "augmentation": None,
            "torch": torch.__version__,
        },
        "history": history,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train a classifier on latents (reference recipe, bugs fixed) and export it as safetensors.",
    )
    p.add_argument("data", help="latents .npy (B x C x H x W float32), or a directory with latents.npy and labels.csv")
    p.add_argument("--labels", help="labels CSV (header of class names, one 0/1 row per sample) when DATA is a .npy")
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--se", action="store_true", help="add the squeeze-and-excitation block")
    p.add_argument("--epochs", type=int, default=200, help="default 200 (reference)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128 (paper)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate, default 2e-4 (reference)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="default 5e-4 (reference)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the samples held out for validation")
    p.add_argument("--seed", type=int, default=1024, help="seeds the split, the initialisation and the shuffling")
    p.add_argument("--out", required=True, help="output weights M.safetensors; the model card goes to M.json")
    p.add_argument("--sigmoid-range", type=float, default=8.0,
                   help="SE gates: the cubic sigmoid's inputs are penalised beyond +-this (default 8)")
    p.add_argument("--range-weight", type=float, default=0.01,
                   help="weight of that penalty in the training objective (default 0.01; 0 turns it off)")
    p.add_argument("--act-range", type=float, default=None,
                   help="also penalise the quadratic activations' inputs beyond +-this (same --range-weight; "
                   "default off)")
    p.add_argument("--input-clip", type=float, default=None,
                   help="clamp every latent to +-this before the model sees it, in training and, through the "
                   "exported `input_clip` metadata, in latent-he (default: no clamp)")
    p.add_argument("--init", help="start from these weights (a safetensors state dict of the same model, e.g. an "
                   "earlier run's --out; the split is the seed's, so validation stays held out) instead of afresh")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--data-note", default="", help="free-text description of the data, copied to the model card")
    p.add_argument("--synthetic", action="store_true",
                   help="mark the data as synthetic in the model card (also set when --data-note mentions 'synthetic')")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be at least 1")
    if not args.sigmoid_range > 0 or not args.range_weight >= 0:
        p.error("--sigmoid-range must be positive and --range-weight not negative")
    for name in ("act_range", "input_clip"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            p.error(f"--{name.replace('_', '-')} must be a positive number")
    if not args.out.endswith(".safetensors"):
        p.error("--out must end in .safetensors")
    return args


def main(argv=None):
    train(parse_args(argv))


if __name__ == "__main__":
    main()
