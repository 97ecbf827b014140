#!/bin/sh
# usage: unikernel_golden.sh BAREFLOW KERNEL_DIR: boots the BareFlow unikernel under QEMU (KVM when
# usable, else TCG) and runs the same static bareflow inside it with the tiered JIT (background
# compile thread, LLVM's code in PROT_EXEC memory); the greedy text must be run.c's golden text.
# Exits 77 (skipped) without QEMU or the kernel image.
set -u
bin=$1 kdir=$2
here=$(dirname "$0")
models=$here/../../../shared/models
command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
[ -f "$kdir/bareflow-kernel.bin" ] || { echo "SKIP: no $kdir/bareflow-kernel.bin"; exit 77; }
out=$(timeout 600 "$bin" boot --kernel "$kdir" --timeout 580 -- generate "$models/stories260K.bin" \
  -z "$models/tok512.bin" -t 0 -n 200 -i "Once upon a time" -T 1 --jit=tiered --trace-jit 2>"${TMPDIR:-/tmp}/bf-jit-boot.$$")
status=$?
golden=$("$BF_PYTHON" "$here/../../tests/tools/golden_text.py")
# The AOT kernels print the same text: the trace must show promotions (none rejected or failed).
if [ "$status" = 0 ] && [ "$out" = "$golden" ] && sh "$here/check_trace.sh" "${TMPDIR:-/tmp}/bf-jit-boot.$$" promoted; then
  rm -f "${TMPDIR:-/tmp}/bf-jit-boot.$$"
  exit 0
fi
echo "unikernel run with --jit=tiered: status $status, stdout:" >&2
echo "$out" >&2
cat "${TMPDIR:-/tmp}/bf-jit-boot.$$" >&2
rm -f "${TMPDIR:-/tmp}/bf-jit-boot.$$"
exit 1
