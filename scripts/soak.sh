#!/bin/bash
# make soak: long runs of the tests that take a seed and a count, part by part. Each part prints
# one summary line (what ran, how long, what it found); logs stay in build/soak/. Exit 1 if any
# part failed. More parts go in the PARTS list below.
#   scripts/soak.sh [PART...]          (default: every part)
#   SOAK_CALLS=1000000 SOAK_SEEDS="1001 1002 1003 1004" SOAK_JOBS=2 SOAK_ACCEL=--tcg
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SOAK_BUILD:-$root/build}
out=$build/soak
mkdir -p "$out"
PARTS="kernel-syscalls"

# The unikernel system-call fuzzer (kernel/tests/guest/syscall_fuzz.c): SOAK_CALLS calls split
# evenly over SOAK_SEEDS, SOAK_JOBS machines at a time, each bounded by a timeout.
part_kernel_syscalls() {
  local calls=${SOAK_CALLS:-1000000} seeds=${SOAK_SEEDS:-"1001 1002 1003 1004"} jobs=${SOAK_JOBS:-2}
  local accel=${SOAK_ACCEL:---tcg} k=$build/kernel
  local n_seeds per t0 t1 failed=0 running=0 seed
  n_seeds=$(echo $seeds | wc -w)
  per=$(( (calls + n_seeds - 1) / n_seeds ))
  for f in bfboot kernel_syscall_fuzz kernel_guest_test bareflow-kernel.bin; do
    [ -e "$k/$f" ] || { echo "soak kernel-syscalls: $k/$f missing (make build)"; return 1; }
  done
  t0=$(date +%s.%N)
  for seed in $seeds; do
    # Well above the ~2,300 calls/s measured under TCG: a hang is reported as status 124.
    ( timeout $((per / 200 + 120)) "$k/bfboot" $accel --timeout $((per / 250 + 60)) --kernel "$k" \
        --app "$k/kernel_syscall_fuzz" --module "$k/kernel_guest_test" -- "$seed" "$per" /kernel_guest_test \
        >"$out/kernel-syscalls-$seed.out" 2>"$out/kernel-syscalls-$seed.log"
      echo $? >"$out/kernel-syscalls-$seed.status" ) &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  t1=$(date +%s.%N)
  for seed in $seeds; do
    local st
    st=$(cat "$out/kernel-syscalls-$seed.status")
    if [ "$st" != 0 ] || ! grep -q "^syscall_fuzz: seed=$seed calls=$per " "$out/kernel-syscalls-$seed.out" ||
       grep -q "PANIC" "$out/kernel-syscalls-$seed.log"; then
      echo "soak kernel-syscalls: seed $seed FAILED (status $st): $out/kernel-syscalls-$seed.{out,log}"
      tail -5 "$out/kernel-syscalls-$seed.log"
      failed=1
    else
      grep "^syscall_fuzz: seed=" "$out/kernel-syscalls-$seed.out" | tail -1
    fi
  done
  printf 'soak kernel-syscalls: %d calls (%d seeds x %d), %.0f s wall, %s, %d jobs: %s\n' "$((per * n_seeds))" \
    "$n_seeds" "$per" "$(awk "BEGIN { print $t1 - $t0 }")" "${accel#--}" "$jobs" "$([ $failed = 0 ] && echo ok || echo FAILED)" |
    tee -a "$out/summary.txt"
  return $failed
}

status=0
for p in ${@:-$PARTS}; do
  case $p in
    kernel-syscalls) part_kernel_syscalls || status=1 ;;
    *) echo "soak: unknown part $p (parts: $PARTS)"; status=1 ;;
  esac
done
exit $status
