#!/usr/bin/env bash
# The service's overhead, one call: one ResNet20 f=8 image at the default
# 128-bit preset (n16) on the CPU, `infer` alone against `serve` plus
# `client infer` on the same machine, with the one-time key upload timed
# apart. Everything is written under OUT:
#
#   tools/service_bench.sh OUT [BIN]
#
#   keygen.json    keygen --model (the keys' size, the seconds)
#   infer.json     infer alone: wall seconds in infer.seconds
#   client1.json   the first client call (uploads the keys)
#   client2.json   the second client call (the server has the keys)
#   summary.json   the ratio of the second client call to infer alone
set -euo pipefail
out=${1:?usage: tools/service_bench.sh OUT [BIN]}
cd "$(dirname "$0")/.."
mkdir -p "$out/models"
out=$(cd "$out" && pwd)
bin=${2:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/latent-he
fi
model=models/resnet20_f8.safetensors
cp "$model" "$out/models/resnet20_f8.safetensors"

# One latent: the first image of the committed (2, 4, 32, 32) float32 fixture.
python3 - "$out/x.npy" <<'PY'
import struct, sys
src = open("tests/fixtures/nn/formula_f8.input.npy", "rb").read()
header_len = struct.unpack("<H", src[8:10])[0]
body = src[10 + header_len:]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 32, 32), }"
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
one = 4 * 32 * 32 * 4
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body[:one])
PY

elapsed() { python3 -c "import time; print(time.time())"; }
"$bin" keygen --model "$model" --out "$out/keys" --json > "$out/keygen.json"
"$bin" encrypt --keys "$out/keys" --input "$out/x.npy" --out "$out/x.ct" --json > "$out/encrypt.json"
t0=$(elapsed)
"$bin" infer --public-key "$out/keys/public.key" --model "$model" --input "$out/x.ct" --out "$out/y.ct" \
    --backend cpu --json > "$out/infer_report.json"
t1=$(elapsed)
python3 -c "import json; print(json.dumps({'seconds': $t1 - $t0}))" > "$out/infer.json"

"$bin" serve --models "$out/models" --state "$out/state" --listen 127.0.0.1:0 --backend cpu \
    --idle-exit 600 --json > "$out/serve.json" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    [ -s "$out/serve.json" ] && break
    sleep 0.1
done
url=$(python3 -c "import json; print(json.load(open('$out/serve.json'))['url'])")
for call in 1 2; do
    "$bin" client infer --server "$url" --keys "$out/keys" --model resnet20_f8 --input "$out/x.npy" --json \
        > "$out/client$call.json"
done
kill $server
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
infer = json.load(open(f"{out}/infer.json"))["seconds"]
first = json.load(open(f"{out}/client1.json"))
second = json.load(open(f"{out}/client2.json"))
summary = {
    "infer_seconds": round(infer, 3),
    "client_seconds_keys_held": second["seconds"]["total"],
    "ratio": round(second["seconds"]["total"] / infer, 3),
    "key_upload_seconds": first["key_upload"]["seconds"],
    "key_upload_bytes": first["key_upload"]["bytes"],
    "first_call": first["seconds"],
    "second_call": second["seconds"],
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
