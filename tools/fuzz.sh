#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of fuzz/ (cargo fuzz on the stable
# toolchain through RUSTC_BOOTSTRAP=1, no sanitizer), one after the other.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; without TARGETs every target runs.
# Each run is held to 2 GB of memory and 10 s per input. Seeds come from
# tests/fixtures and fuzz/seeds, copied into fuzz/corpus/seeds/TARGET;
# the growing corpus is fuzz/corpus/TARGET (both ignored by git). A crash,
# leak, timeout or out-of-memory input is kept in fuzz/artifacts/TARGET/
# and makes the script exit 1. A summary line per target (executions,
# coverage, corpus) goes to stdout and to fuzz/corpus/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

seconds="${1:-60}"
shift || true
all=(ciphertexts secret_key sealed_secret_key public_keys npy model model_json params_literal client_bundle csv_tables images)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Copies the files matching the globs into the seed folder of target $1.
seed() {
    local dir="$root/fuzz/corpus/seeds/$1"
    shift
    mkdir -p "$dir"
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        # keep the folder in the name: fixtures of different cases share names
        cp "$f" "$dir/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
}

small() { find "$@" -type f -size -300k | sort; }

prepare_seeds() {
    case "$1" in
        ciphertexts | secret_key | sealed_secret_key | public_keys | params_literal | model_json | client_bundle)
            seed "$1" fuzz/seeds/"$1"/* ;;
        npy) seed npy $(small tests/fixtures/nn tests/fixtures/vqgan -name '*.npy' -size -40k) ;;
        model) seed model $(small tests/fixtures/nn -name '*.safetensors') ;;
        csv_tables) seed csv_tables tests/fixtures/metrics/*/*.csv ;;
        images) seed images $(small tests/fixtures/images tests/fixtures/images/real \
                    \( -name '*.png' -o -name '*.jpg' -o -name '*.dcm' -o -name 'signed_30x50' \)) ;;
        *) echo "unknown fuzz target $1 (targets: ${all[*]})" >&2; exit 2 ;;
    esac
}

summary="$root/fuzz/corpus/summary.txt"
mkdir -p "$root/fuzz/corpus"
: > "$summary"
status=0
for t in "${targets[@]}"; do
    prepare_seeds "$t"
    mkdir -p "fuzz/corpus/$t"
    log="$root/fuzz/corpus/$t.log"
    echo "== $t: ${seconds}s" >&2
    if (cd fuzz && cargo fuzz run -s none "$t" "corpus/$t" "corpus/seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
        result="ok"
    else
        result="FAILED (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || true)
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || true)
    corp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || true)
    line="$t: executions ${runs:-?}, coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?}: $result"
    echo "$line" | tee -a "$summary"
    [ "$result" = ok ] || tail -n 30 "$log" >&2
done
exit $status
