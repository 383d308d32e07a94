#!/usr/bin/env bash
# The GPU check: proves the CUDA backend right on a real GPU and measures it against the device's bandwidth and
# PyTorch, in one run under a time budget (bench/README.md, "The GPU check").
#
#   bash gpu-pack/gpu-check.sh [--budget SECONDS] [--out DIR] [--seed N] [--steps a,b]   on the device machine
#   npm run gpu:check -- --dry-run                                                       here: the SIMT executor
#
# Run from a packed folder (npm run gpu:pack: node.xz + app.tar.xz beside this script) it unpacks both into a
# scratch folder and runs the packed build with the packed Node; run from a checkout (scripts/) it uses the
# checkout's dist/ and build/ and the `node` on PATH. Without --dry-run it refuses, with exit code 3, where no
# GPU answers. The budget (default 420 s) counts from this script's start: unpacking is inside it, and a
# watchdog stops the run 30 s after it in case a step hangs. Results: results.json, summary.txt and logs in
# --out (default $OUT, the device tool's folder that comes back; else ./gpu-check-out).
set -u
start=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

budget=420
dry=0
out="${OUT:-$PWD/gpu-check-out}"
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --budget) budget="$2"; shift ;;
    --budget=*) budget="${1#*=}" ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#*=}" ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) pass+=("$1") ;;
  esac
  shift
done
case "$budget" in ''|*[!0-9]*) echo "gpu-check: --budget must be a whole number of seconds, not '$budget'" >&2; exit 2 ;; esac
mkdir -p "$out"
log() { echo "gpu-check: $*"; }

# A GPU, or a clear refusal (before spending any time on unpacking).
if [ "$dry" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    log "refusing to run: no CUDA GPU here (nvidia-smi is not installed). Run this on the device machine, or use --dry-run to exercise the check on the SIMT executor." >&2
    exit 3
  fi
  if ! gpus=$(nvidia-smi -L 2>&1) || ! printf '%s\n' "$gpus" | grep -q '^GPU '; then
    log "refusing to run: no CUDA GPU here (nvidia-smi -L: $(printf '%s' "$gpus" | head -c 300)). Use --dry-run to exercise the check on the SIMT executor." >&2
    exit 3
  fi
  log "$(printf '%s\n' "$gpus" | head -n 4)"
fi

# Where the app and the Node binary come from: the pack beside this script, or the checkout above it.
if [ -f "$here/app.tar.xz" ] && [ -f "$here/node.xz" ]; then
  work="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/node-grpo-gpu-check}"
  rm -rf "$work" && mkdir -p "$work/app" || { log "cannot create $work" >&2; exit 1; }
  unxz_to() { # file.xz -> stdout: xz where it exists, else Python's lzma (the device image has Python)
    if command -v xz >/dev/null 2>&1; then xz -dc "$1"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
  }
  unxz_to "$here/node.xz" > "$work/node" && chmod +x "$work/node" || { log "could not unpack node.xz" >&2; exit 1; }
  if command -v xz >/dev/null 2>&1; then
    tar -xJf "$here/app.tar.xz" -C "$work/app"
  else
    python3 -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$here/app.tar.xz" "$work/app"
  fi || { log "could not unpack app.tar.xz" >&2; exit 1; }
  node="$work/node"
  app="$work/app"
  manifest="$here/MANIFEST.json"
  if ! ver=$("$node" --version 2>&1); then
    log "the packed Node does not start on this machine: $ver" >&2
    exit 1
  fi
  log "unpacked the pack (Node $ver) into $work in $(( $(date +%s) - start )) s"
else
  app=$(cd "$here/.." && pwd)
  node=$(command -v node || true)
  manifest=""
  [ -n "$node" ] || { log "no packed folder here and no node on PATH: run npm run gpu:pack, and this script from the packed folder" >&2; exit 1; }
  [ -f "$app/dist/check/main.js" ] || { log "$app/dist/check/main.js is missing: run npm run build:ts (or npm run gpu:pack)" >&2; exit 1; }
fi

# cuBLASLt: the linear ops load it at run time where it exists (else they run our GEMM). The device image has it
# inside PyTorch's nvidia-cublas wheel (site-packages/nvidia/cublas/lib, or nvidia/cu13/lib in the CUDA 13
# wheels' layout); put that folder on the loader's path so the check exercises the GEMM users get by default (the
# check also runs the linear ops with GRPO_CUDA_GEMM=own, our kernels). NCCL, for the distributed step, is found
# the same way by the Node part (lib/check/run.ts, findNccl) and passed to its child as GRPO_NCCL_LIBRARY.
if [ "$dry" = 0 ] && command -v python3 >/dev/null 2>&1; then
  cublas=$(python3 -c '
import glob, os, sys
for p in sys.path:
    for pattern in ("nvidia/cublas/lib/libcublasLt.so*", "nvidia/*/lib/libcublasLt.so*"):
        hits = sorted(glob.glob(os.path.join(p or ".", pattern)))
        if hits:
            print(os.path.dirname(hits[0])); sys.exit(0)
' 2>/dev/null || true)
  if [ -n "$cublas" ] && [ -d "$cublas" ]; then
    export LD_LIBRARY_PATH="$cublas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    log "cuBLASLt from PyTorch's nvidia-cublas: $cublas"
  fi
fi

left=$(( budget - ($(date +%s) - start) ))
[ "$left" -ge 10 ] || { log "only ${left} s of the ${budget} s budget left after unpacking" >&2; exit 1; }
args=(--budget "$left" --out "$out")
[ "$dry" = 1 ] && args+=(--dry-run)
[ -n "$manifest" ] && args+=(--manifest "$manifest")
# The watchdog: the check keeps its own budget; this only ends a step that hangs past it.
if command -v timeout >/dev/null 2>&1; then wd=(timeout --kill-after=10 $(( left + 30 ))); else wd=(); fi
set -o pipefail
"${wd[@]}" "$node" "$app/dist/check/main.js" "${args[@]}" ${pass[@]+"${pass[@]}"} 2>&1 | tee "$out/gpu-check-log.txt"
code=$?
[ "$code" = 124 ] && log "the watchdog stopped the run at $(( left + 30 )) s; results.json holds the steps that finished" >&2
exit "$code"
