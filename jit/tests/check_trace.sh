#!/bin/sh
# usage: check_trace.sh LOG EVIDENCE: LOG holds a run's stderr with --trace-jit; EVIDENCE says what
# must show that the JIT ran, comma-separated:
#   promoted  the summary counts at least one promotion, none rejected and none failed (always checked)
#   tier=T    every site's summary line shows tier T (interp, O0..O3)
#   fused     both fused groups (qkv, w13) ran
# Prints what is missing and exits 1, so that a run on AOT kernels (JIT off, or not attached) fails.
set -u
log=$1 evidence=$2
summary=$(grep '^jit summary:' "$log")
if [ -z "$summary" ]; then
  echo "no 'jit summary' line in the run's stderr: the JIT did not run" >&2
  exit 1
fi
counts=$(echo "$summary" | sed -n 's/.*; \([0-9]*\) promotions, \([0-9]*\) rejected, \([0-9]*\) failed;.*/\1 \2 \3/p')
set -- $counts
if [ $# -ne 3 ] || [ "$1" -eq 0 ] || [ "$2" -ne 0 ] || [ "$3" -ne 0 ]; then
  echo "want at least 1 promotion, 0 rejected, 0 failed: $summary" >&2
  exit 1
fi
# The summary's site lines ("wq  O3  ...") and fused group lines, up to the first other line.
sites='wq|wk|wv|wo|w1|w2|w3|classifier'
table=$(awk -v sites="^($sites) " '
  /^jit summary:/ { on = 1; next }
  on && /^site / { next }
  on && ($0 ~ sites || /^(qkv|w13) /) { print; next }
  on { on = 0 }' "$log")
status=0
for e in $(echo "$evidence" | tr ',' ' '); do
  case "$e" in
    promoted) ;;
    tier=*)
      want=${e#tier=}
      n=$(echo "$table" | grep -Ec "^($sites) ")
      bad=$(echo "$table" | awk -v want="$want" -v sites="^($sites) " '$0 ~ sites && $2 != want { printf " %s=%s", $1, $2 }')
      if [ "$n" -eq 0 ] || [ -n "$bad" ]; then
        echo "want every site at $want; summary has $n site lines, off:$bad" >&2
        status=1
      fi ;;
    fused)
      for g in qkv w13; do
        echo "$table" | grep -q "^$g  *fused " || { echo "want $g fused; not in the summary" >&2; status=1; }
      done ;;
    *) echo "check_trace.sh: unknown evidence '$e'" >&2; exit 2 ;;
  esac
done
[ $status = 0 ] || { echo "$table" >&2; }
exit $status
