#!/bin/bash
# Scores rows of this run on a lent GPU machine, as was done on 2026-11-26
# on an NVIDIA H100 (0.58 s of encrypted inference per image).
#
# Usage, from the repository root on that machine:
#   TIME_S=S BIN=path/to/latent-he bash docs/runs/synth10k-test-resnet20-f8/score_on_device.sh OUTDIR
# starts OUTDIR from this folder's files and scores the rows still missing,
# in order; with OFFSET=K LIMIT=N it scores that range into an empty
# OUTDIR instead. Then, here, fold OUTDIR in with `score ... --merge OUTDIR`
# (the command in README.md; BIN and that `score` built from commit 09fc06f
# or earlier, as README.md says). Rows are written batch by batch, so stopping
# at TIME_S seconds loses at most one batch of 16.
#
# Headless NVIDIA containers: the one seen here had no Vulkan loader, and
# its ICD (libGLX_nvidia.so.0) refused vkCreateInstance without a display.
# Carry a libvulkan.so.1 (Debian's libvulkan1) next to BIN and name the
# EGL library as the ICD, which works headless.
set -u
out=${1:?output folder}
dir=$(cd "$(dirname "$BIN")" && pwd)
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
egl=$(ldconfig -p | grep -o '/[^ ]*libEGL_nvidia.so.0' | head -1)
if [ -n "$egl" ]; then
  printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$egl" > /tmp/nvidia_egl_icd.json
  export VK_ICD_FILENAMES=/tmp/nvidia_egl_icd.json
fi
"$BIN" devices | head -3
[ -d /tmp/synth10k ] || "$BIN" synth --n 10000 --seed 1 --out /tmp/synth10k > /dev/null
mkdir -p "$out"
range=()
if [ -n "${OFFSET:-}" ]; then
  range=(--offset "$OFFSET" --limit "$LIMIT")
else
  cp "$(dirname "$0")"/{results.csv,failed.csv,run.json} "$out"/
fi
LATENT_HE_CACHE_DIR=/tmp/latent-he-cache timeout "${TIME_S:-500}" "$BIN" score \
  --dataset nih --root /tmp/synth10k --split /tmp/synth10k/test_list.txt \
  --model models/resnet20_f8.safetensors --vqgan models/vqgan_f8.safetensors \
  --encrypted --backend gpu --lockstep 16 "${range[@]}" --out "$out"
echo "rows: $(( $(wc -l < "$out/results.csv") - 1 ))"
