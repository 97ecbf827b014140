#!/bin/bash
# bench_decode.sh [BUILD_DIR] [MODELS_DIR] [RUNS]: decode tok/s of synthetic stories15M/110M (F32)
# with the same static bareflow on Linux and inside the unikernel under KVM, alternating runs.
# Writes the synthetic models to $TMPDIR (default /tmp) once; prints one line per run.
set -u
b=${1:-build} m=${2:-../shared/models} runs=${3:-3} t=${TMPDIR:-/tmp}
args=(-z "$m/tokenizer.bin" -t 0 -n 200 -i "Once upon a time" -T 1)
for shape in stories15M stories110M; do
  f="$t/bf-synth-$shape-f32.gguf"
  [ -f "$f" ] || "$b/bench/bench_synth_model" "$f" "$shape" f32 >/dev/null || exit 1
  for i in $(seq "$runs"); do
    echo "$shape linux run$i: $("$b/bareflow" generate "$f" "${args[@]}" 2>&1 >/dev/null | grep achieved)"
    echo "$shape unikernel-kvm run$i: $("$b/bareflow" boot --kvm -- generate "$f" "${args[@]}" 2>&1 >/dev/null | grep achieved)"
  done
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
