#!/bin/bash
# make soak: long runs of the tests that take a seed and a count, part by part. Each part prints
# one summary line (what ran, how long, what it found); logs stay in build/soak/. Exit 1 if any
# part failed. More parts go in the PARTS list below.
#   scripts/soak.sh [PART...]          (default: every part)
#   SOAK_CALLS=1000000 SOAK_SEEDS="1001 1002 1003 1004" SOAK_JOBS=2 SOAK_ACCEL=--tcg SOAK_MEM=
#   (kernel-syscalls-lowmem: the same fuzzer on a 56 MiB machine, 200,000 calls, seeds 2001 2002)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SOAK_BUILD:-$root/build}
out=$build/soak
mkdir -p "$out"
PARTS="kernel-syscalls kernel-syscalls-lowmem state-crashes disk-kills serve-load"

# The unikernel system-call fuzzer (kernel/tests/guest/syscall_fuzz.c): SOAK_CALLS calls split
# evenly over SOAK_SEEDS, SOAK_JOBS machines at a time, each bounded by a timeout.
# $1: the part's name (log file prefix); the rest of the settings come from the environment.
part_kernel_syscalls() {
  local name=$1 calls=${SOAK_CALLS:-1000000} seeds=${SOAK_SEEDS:-"1001 1002 1003 1004"} jobs=${SOAK_JOBS:-2}
  local accel=${SOAK_ACCEL:---tcg} mem=${SOAK_MEM:+--mem $SOAK_MEM} k=$build/kernel
  local n_seeds per t0 t1 failed=0 running=0 seed
  n_seeds=$(echo $seeds | wc -w)
  per=$(( (calls + n_seeds - 1) / n_seeds ))
  for f in bfboot kernel_syscall_fuzz kernel_guest_test bareflow-kernel.bin; do
    [ -e "$k/$f" ] || { echo "soak $name: $k/$f missing (make build)"; return 1; }
  done
  t0=$(date +%s.%N)
  for seed in $seeds; do
    # Well above the ~2,300 calls/s measured under TCG: a hang is reported as status 124.
    ( timeout $((per / 200 + 120)) "$k/bfboot" $accel $mem --timeout $((per / 250 + 60)) --kernel "$k" \
        --app "$k/kernel_syscall_fuzz" --module "$k/kernel_guest_test" -- "$seed" "$per" /kernel_guest_test \
        >"$out/$name-$seed.out" 2>"$out/$name-$seed.log"
      echo $? >"$out/$name-$seed.status" ) &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  t1=$(date +%s.%N)
  for seed in $seeds; do
    local st
    st=$(cat "$out/$name-$seed.status")
    if [ "$st" != 0 ] || ! grep -q "^syscall_fuzz: seed=$seed calls=$per " "$out/$name-$seed.out" ||
       grep -q "PANIC" "$out/$name-$seed.log"; then
      echo "soak $name: seed $seed FAILED (status $st): $out/$name-$seed.{out,log}"
      tail -5 "$out/$name-$seed.log"
      failed=1
    else
      grep "^syscall_fuzz: seed=" "$out/$name-$seed.out" | tail -1
    fi
  done
  printf 'soak %s: %d calls (%d seeds x %d), %.0f s wall, %s%s, %d jobs: %s\n' "$name" "$((per * n_seeds))" \
    "$n_seeds" "$per" "$(awk "BEGIN { print $t1 - $t0 }")" "${accel#--}" "${SOAK_MEM:+, $SOAK_MEM MiB}" "$jobs" "$([ $failed = 0 ] && echo ok || echo FAILED)" |
    tee -a "$out/summary.txt"
  return $failed
}

# Runs one command of a part with its output in build/soak/NAME.log, then prints the part's summary
# line: the log's line starting with SUMMARY, the wall time, ok or FAILED.
#   timed_part NAME SUMMARY COMMAND ARGS...
timed_part() {
  local name=$1 summary=$2 t0 t1 st
  shift 2
  [ -x "$build/bareflow" ] || { echo "soak $name: $build/bareflow missing (make build)"; return 1; }
  t0=$(date +%s.%N)
  "$@" >"$out/$name.log" 2>&1
  st=$?
  t1=$(date +%s.%N)
  printf 'soak %s: %s, %.0f s wall: %s\n' "$name" "$(grep "^$summary" "$out/$name.log")" \
    "$(awk "BEGIN { print $t1 - $t0 }")" "$([ $st = 0 ] && echo ok || echo "FAILED ($out/$name.log)")" |
    tee -a "$out/summary.txt"
  return $st
}

# The persistent store through whole runs (state/tests/lifecycle_test.py): every fault point of a
# cold and a warm run, then SOAK_KILLS (default 200) runs SIGKILLed at random moments.
part_state_crashes() {
  XDG_CACHE_HOME=$out/cache timed_part "$1" "crash trials:" python3 "$root/state/tests/lifecycle_test.py" \
    "$build/bareflow" "$root/../shared/models" --jit --kill-trials "${SOAK_KILLS:-200}" --seed "$(date +%s)"
}

# QEMU SIGKILLed while the guest writes its store to a virtio-blk disk (boot case disk-kill),
# SOAK_DISK_KILLS trials (default 200).
part_disk_kills() {
  local k=$build/kernel
  BF_KILL_TRIALS=${SOAK_DISK_KILLS:-200} BF_KILL_SEED=$(date +%s) BF_PYTHON=${BF_PYTHON:-python3} \
    timed_part "$1" "disk-kill:" "$root/kernel/tests/boot_tests.sh" disk-kill "$k/bfboot" "$k/kernel_guest_test" "$k" \
    "$build/bareflow" "$root/../shared/models"
}

# bareflow serve under SOAK_SERVE_SECONDS (default 300) of 32 clients mixing valid, bad, oversized,
# slow and abandoned requests (tests/serve_load.py): every answer expected, no leak, same text.
part_serve_load() {
  timed_part "$1" "serve-load:" python3 "$root/tests/serve_load.py" "$build/bareflow" "$root/../shared/models" \
    "${SOAK_SERVE_SECONDS:-300}" 32
}

status=0
for p in ${@:-$PARTS}; do
  case $p in
    kernel-syscalls) part_kernel_syscalls "$p" || status=1 ;;
    kernel-syscalls-lowmem)  # out-of-memory paths: most large mmap/brk/mremap calls fail
      SOAK_CALLS=${SOAK_LOWMEM_CALLS:-200000} SOAK_SEEDS="2001 2002" SOAK_MEM=56 part_kernel_syscalls "$p" || status=1 ;;
    state-crashes) part_state_crashes "$p" || status=1 ;;
    disk-kills) part_disk_kills "$p" || status=1 ;;
    serve-load) part_serve_load "$p" || status=1 ;;
    *) echo "soak: unknown part $p (parts: $PARTS)"; status=1 ;;
  esac
done
exit $status
