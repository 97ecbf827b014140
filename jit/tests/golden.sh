#!/bin/sh
# usage: golden.sh BAREFLOW STEPS EVIDENCE [flags...]: stories260K's greedy text through BAREFLOW with
# the flags (and --trace-jit) must be run.c's golden text (200 steps), or its prefix (fewer steps),
# and the trace must show EVIDENCE that the JIT ran (check_trace.sh): the AOT kernels alone print
# the same text.
set -eu
bin=$1 steps=$2 evidence=$3
shift 3
here=$(dirname "$0")
models=$here/../../../shared/models
err=${TMPDIR:-/tmp}/bf-jit-golden.$$
trap 'rm -f "$err"' EXIT
out=$("$bin" generate "$models/stories260K.bin" -z "$models/tok512.bin" -t 0 -n "$steps" -i "Once upon a time" \
  --no-state "$@" --trace-jit 2>"$err")
golden=$("$BF_PYTHON" "$here/../../tests/tools/golden_text.py")
text_ok=0
if [ "$steps" = 200 ]; then
  [ "$out" = "$golden" ] && text_ok=1
else
  case "$golden" in "$out"*) [ ${#out} -gt 40 ] && text_ok=1 ;; esac
fi
if [ $text_ok = 0 ]; then
  echo "text differs from the golden text with $*:" >&2
  echo "$out" >&2
  exit 1
fi
sh "$here/check_trace.sh" "$err" "$evidence" || { echo "with $*" >&2; exit 1; }
