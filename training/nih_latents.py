"""Pairs the latents `latent-he encode --json` wrote for a folder of NIH-style
images with their labels from Data_Entry_2017.csv, giving the directory
`train.py` reads (and `latent-he score --dataset latents` too):
latents.npy, labels.csv (the 15 NIH classes) and names.txt.

    latent-he encode --vqgan V --input DIR/images --out z.npy --json > z.json
    python training/nih_latents.py --root DIR --latents z.npy --encoded z.json \
        --split DIR/train_val_list.txt --out latents_train

Only the images named in --split are kept (all when it is not given), in the
split file's order.
"""

import argparse
import csv
import json
import os

import numpy as np

NIH15 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
         "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
         "No Finding"]


def read_labels(root):
    """{image name: set of finding names} from ROOT/Data_Entry_2017.csv."""
    labels = {}
    with open(os.path.join(root, "Data_Entry_2017.csv"), newline="") as f:
        for row in csv.reader(f):
            if row[0] != "Image Index":
                labels[row[0]] = set(row[1].split("|"))
    return labels


def read_split(path):
    """The image names of a split list, one a line, in its order."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def write_latents_dir(out, z, names, labels):
    """Writes the directory train.py reads: latents.npy (float32, one row per
    name, in order), labels.csv (the 15 NIH classes, 0/1) and names.txt."""
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "latents.npy"), np.asarray(z, dtype=np.float32))
    with open(os.path.join(out, "labels.csv"), "w") as f:
        f.write(",".join(NIH15) + "\n")
        for n in names:
            f.write(",".join("1" if c in labels[n] else "0" for c in NIH15) + "\n")
    with open(os.path.join(out, "names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="NIH-style folder with Data_Entry_2017.csv")
    ap.add_argument("--latents", required=True, help="the .npy encode wrote")
    ap.add_argument("--encoded", required=True, help="encode's --json output (its `files` list)")
    ap.add_argument("--split", help="image names to keep, one a line")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    with open(args.encoded) as f:
        files = [os.path.basename(p) for p in json.load(f)["files"]]
    z = np.load(args.latents)
    if len(files) != z.shape[0]:
        raise SystemExit(f"{args.encoded} lists {len(files)} files, {args.latents} holds {z.shape[0]} latents")
    index = {name: i for i, name in enumerate(files)}
    labels = read_labels(args.root)
    names = read_split(args.split) if args.split else files
    missing = [n for n in names if n not in index or n not in labels]
    if missing:
        raise SystemExit(f"{len(missing)} images have no latent or no label, e.g. {missing[:3]}")
    write_latents_dir(args.out, z[[index[n] for n in names]], names, labels)
    print(json.dumps({"out": args.out, "samples": len(names), "latent": list(z.shape[1:])}))


if __name__ == "__main__":
    main()
