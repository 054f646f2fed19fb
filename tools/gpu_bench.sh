#!/usr/bin/env bash
# One call on a GPU machine: everything a real-GPU measurement of the engine
# needs, written under OUT.
#
#   tools/gpu_bench.sh OUT [BIN]
#
# On a fresh headless NVIDIA machine it
#   1. makes the Vulkan loader and the driver's ICD visible: Debian's
#      libvulkan1 and the EGL/GL dispatch libraries, unpacked from .deb files
#      in .gl/ (carried there beforehand, see below) when the machine has no
#      loader, and the NVIDIA ICD named through its EGL library, which works
#      without a display;
#   2. builds the release binary unless BIN names one (a binary built
#      elsewhere must target the machine: RUSTFLAGS="-C target-cpu=x86-64-v4");
#   3. runs `devices`, `check --preset n16`, `selftest --preset n16 --backend
#      gpu` and `bench --backend gpu --profile` for ResNet20 at f=8, one image
#      alone and in groups of 16, each into OUT as JSON (and the profiles);
#      the weights kept on the device after the first run (--weight-memory
#      40GiB: the model needs about 30 GB at n16, an H100 has 80), so the
#      median of three runs is the steady state.
#
# To carry the loaders from a machine with Debian's apt (once, in the
# repository root): mkdir -p .gl && (cd .gl && apt-get download libvulkan1
# libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); keep .gl out of git.
set -euo pipefail
out=${1:?usage: tools/gpu_bench.sh OUT [BIN]}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
started=$(date +%s)
log() { echo "[$(( $(date +%s) - started )) s] $*" | tee -a "$out/steps.log"; }

if ! ldconfig -p | grep -q libvulkan.so.1; then
    if compgen -G ".gl/*.deb" > /dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        log "Vulkan loader unpacked from .gl/"
    else
        log "no Vulkan loader and no .gl/*.deb to unpack: the GPU may stay invisible"
    fi
fi
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
    egl=$(ldconfig -p | grep -o '/[^ ]*libEGL_nvidia.so.0' | head -1 || true)
    if [ -n "$egl" ]; then
        printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$egl" \
            > "$out/nvidia_egl_icd.json"
        export VK_ICD_FILENAMES="$out/nvidia_egl_icd.json"
    elif [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/latent-he-runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export LATENT_HE_CACHE_DIR="${LATENT_HE_CACHE_DIR:-/tmp/latent-he-cache}"

bin=${2:-}
if [ -z "$bin" ]; then
    log "building"
    cargo build --release --quiet
    bin=target/release/latent-he
fi
git rev-parse HEAD > "$out/commit.txt" 2>/dev/null || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia-smi.csv" 2>/dev/null || true

run() {
    local name=$1; shift
    log "$name: $*"
    if "$bin" "$@" > "$out/$name.json" 2> "$out/$name.err"; then
        log "$name: done"
    else
        log "$name: exit $? (see $name.err)"
    fi
}
run devices devices --json
run check check --preset n16 --json
run selftest selftest --preset n16 --backend gpu --json
for lockstep in 1 16; do
    run "bench-resnet20-f8-x$lockstep" bench --models resnet20 --latents f8 --backend gpu \
        --lockstep "$lockstep" --runs 3 --weight-memory 40GiB --profile --out "$out/bench-x$lockstep" --json
done
log "finished"
