#!/bin/sh
# make fuzz: each target for $FUZZ_SECONDS (default 600) on its accumulated corpus; a summary line
# per target (runs, covered edges, corpus) and any crash file are left in CORPUS_DIR.
# usage: run_fuzz.sh FUZZ_BIN_DIR SEEDS_DIR CORPUS_DIR TARGET...
set -e
bin=$1 seeds=$2 corpus=$3
shift 3
secs=${FUZZ_SECONDS:-600}
for t in "$@"; do
  mkdir -p "$corpus/$t" "$corpus/crashes"
  cp -n "$seeds/$t"/* "$corpus/$t/" 2>/dev/null || true
  "$bin/$t" -max_total_time="$secs" -max_len=400000 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$corpus/crashes/$t-" "$corpus/$t" > "$corpus/$t.log" 2>&1 || status=$?
  echo "$t: $(grep -E '^#[0-9]+.*DONE|^#[0-9]+.*(cov|pulse)' "$corpus/$t.log" | tail -1) ${status:+CRASH (exit $status, see $corpus/crashes)}"
  unset status
done
