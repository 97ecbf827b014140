#!/bin/bash
# Boot tests: each case boots the unikernel under QEMU TCG (every run has a timeout) and asserts
# on the guest's stdout, the kernel log and the exit status.
#   boot_tests.sh CASE BFBOOT GUEST_TEST KERNEL_DIR [BAREFLOW] [MODELS_DIR]
set -u
case_name=$1 bfboot=$2 guest=$3 kdir=$4 bareflow=${5:-} models=${6:-}
tmp=$(mktemp -d /tmp/bf-boot-test-XXXXXX)
"$BF_PYTHON" "$(dirname "$0")/../../tests/tools/golden_text.py" > "$tmp/golden"
trap 'rm -rf "$tmp"' EXIT
T=120

fail() { echo "FAIL [$case_name]: $*"; echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; cat "$tmp/err"; exit 1; }
boot() { timeout $((T + 10)) "$bfboot" --tcg --timeout $T --kernel "$kdir" "$@" >"$tmp/out" 2>"$tmp/err"; status=$?; }
expect_status() { [ "$status" = "$1" ] || fail "exit status $status, expected $1"; }
expect_log() { grep -qF -- "$1" "$tmp/err" || fail "kernel log lacks: $1"; }
need_models() {
  if [ -z "$bareflow" ] || [ ! -x "$bareflow" ] || [ ! -f "$models/stories260K.bin" ]; then
    echo "SKIP: needs bareflow and $models/stories260K.bin"; exit 77
  fi
}

case $case_name in
  hello)
    boot --app "$guest" -- hello a "b c"
    expect_status 0
    printf 'hello from ring 3: argc=4 [kernel_guest_test] [hello] [a] [b c]\n' | cmp -s - "$tmp/out" || fail "stdout differs"
    expect_log "this line goes to stderr" ;;
  exit-status)
    boot --app "$guest" -- exit 42
    expect_status 42
    # The raw QEMU status carries it too: isa-debug-exit makes it (42 << 1) | 1 = 85.
    timeout 60 qemu-system-x86_64 -M pc -nodefaults -display none -no-reboot -m 128M -accel tcg -cpu max \
      -serial null -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$kdir/bareflow-kernel.bin" \
      -append "-- g exit 42" -initrd "$guest g" >/dev/null 2>&1
    q=$?; [ "$q" = 85 ] || fail "qemu exit status $q, expected 85" ;;
  enosys)
    boot --app "$guest" -- enosys
    expect_status 0
    expect_log "syscall 330 (pkey_alloc) is not implemented: -ENOSYS"
    expect_log "syscall 999 (unknown) is not implemented: -ENOSYS" ;;
  null-deref)
    boot --app "$guest" -- null
    expect_status 139
    expect_log "application fault: page fault (vector 14)"
    expect_log "cr2=0x0"
    expect_log "user stack trace:"
    expect_log " main+0x" ;;
  efault)
    boot --app "$guest" -- efault
    expect_status 0
    grep -qF "efault: -1/14 -1/14 -1/14 -1/14" "$tmp/out" || fail "bad pointers did not all give EFAULT" ;;
  files)
    f="$models/tok512.bin"; [ -f "$f" ] || f="$guest"
    boot --app "$guest" -- file "$f"
    expect_status 0
    grep -q "ok=1" "$tmp/out" || fail "read/mmap checksums differ" ;;
  threads)
    # pthreads: condvar handshake, floating point in every thread, a busy-waiting thread that
    # only finishes if the scheduler preempts, joins. Same numbers as on Linux.
    boot --app "$guest" -- threads
    expect_status 0
    printf 'threads: sum=90513 main=7542 spinner=7\n' | cmp -s - "$tmp/out" || fail "thread results differ" ;;
  bad-elf)
    for i in $(seq 20); do echo "this is not an executable"; done >"$tmp/notelf"
    boot --app "$tmp/notelf" -- x
    expect_status 255
    expect_log "cannot run /notelf: not an ELF file" ;;
  no-module)
    timeout 60 qemu-system-x86_64 -M pc -nodefaults -display none -no-reboot -m 128M -accel tcg -cpu max \
      -serial file:"$tmp/err" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$kdir/bareflow-kernel.bin" \
      -append "-- nothing" >"$tmp/out" 2>&1
    status=$?
    expect_status 255  # (255 << 1 | 1) & 0xff
    expect_log "PANIC: no application" ;;
  bad-cmdline)
    timeout 60 qemu-system-x86_64 -M pc -nodefaults -display none -no-reboot -m 128M -accel tcg -cpu max \
      -serial file:"$tmp/err" -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$kdir/bareflow-kernel.bin" \
      -append '-- nosuch arg' -initrd "$guest g" >"$tmp/out" 2>&1
    status=$?
    expect_status 255
    expect_log "PANIC: bad command line: application 'nosuch' is not a boot module" ;;
  golden)
    need_models
    timeout $((T + 10)) "$bareflow" boot --tcg --timeout $T -- generate "$models/stories260K.bin" -z "$models/tok512.bin" \
      -t 0 -n 200 -i "Once upon a time" >"$tmp/out" 2>"$tmp/err"
    status=$?
    expect_status 0
    cmp "$tmp/out" "$tmp/golden" || fail "stdout is not the golden stories260K text" ;;
  golden-pc)
    # The -kernel form on a PC machine (SeaBIOS) instead of microvm.
    need_models
    timeout $((T + 10)) "$bareflow" boot --tcg --machine pc --timeout $T -- generate "$models/stories260K.bin" \
      -z "$models/tok512.bin" -t 0 -n 200 -i "Once upon a time" >"$tmp/out" 2>"$tmp/err"
    status=$?
    expect_status 0
    cmp "$tmp/out" "$tmp/golden" || fail "stdout is not the golden stories260K text" ;;
  golden-threads)
    # bareflow's thread pool with two threads on the one CPU.
    need_models
    timeout $((T + 10)) "$bareflow" boot --tcg --timeout $T -- generate "$models/stories260K.bin" -z "$models/tok512.bin" \
      -t 0 -n 200 -i "Once upon a time" -T 2 >"$tmp/out" 2>"$tmp/err"
    status=$?
    expect_status 0
    cmp "$tmp/out" "$tmp/golden" || fail "stdout is not the golden stories260K text" ;;
  golden-auto)
    # No accelerator flag: KVM when /dev/kvm works (with the SYSCALL workaround on nested KVM),
    # TCG otherwise; the text must be the same either way.
    need_models
    timeout $((T + 10)) "$bareflow" boot --timeout $T -- generate "$models/stories260K.bin" -z "$models/tok512.bin" \
      -t 0 -n 200 -i "Once upon a time" >"$tmp/out" 2>"$tmp/err"
    status=$?
    expect_status 0
    cmp "$tmp/out" "$tmp/golden" || fail "stdout is not the golden stories260K text" ;;
  code-pages)
    # The kernel maps the app's code with 4 KiB pages and, at exit, counts the pages whose accessed
    # bit the CPU set. Without the JIT few pages run; compiling at O3 uses far more of LLVM, yet
    # part of it stays untouched (the evidence for a smaller image). Same golden text either way.
    need_models
    modes=off
    "$bareflow" generate --help | grep -q "tiered | O0" && modes="off O3"
    for mode in $modes; do
      timeout $((T + 10)) "$bareflow" boot --tcg --code-pages --timeout $T -- generate "$models/stories260K.bin" \
        -z "$models/tok512.bin" -t 0 -n 200 -i "Once upon a time" -T 1 --jit=$mode >"$tmp/out" 2>"$tmp/err"
      status=$?
      expect_status 0
      cmp -s "$tmp/out" "$tmp/golden" || fail "--jit=$mode: stdout is not the golden text"
      pages=$(sed -nE 's/.*code pages: ([0-9]+) of ([0-9]+) pages of code used.*/\1 \2/p' "$tmp/err")
      llvm=$(sed -nE 's/.*functions on used pages: LLVM ([0-9]+) of ([0-9]+) .*/\1 \2/p' "$tmp/err")
      [ -n "$pages" ] && [ -n "$llvm" ] || fail "--jit=$mode: no code pages report"
      set -- $pages $llvm
      [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] && [ "$4" -gt 1000 ] && [ "$3" -lt "$4" ] || fail "--jit=$mode: implausible report: $pages / $llvm"
      eval "used_$mode=$1 llvm_$mode=$3"
    done
    if [ "$modes" != off ]; then
      [ "$used_O3" -gt $((used_off * 2)) ] && [ "$llvm_O3" -gt $((llvm_off * 2)) ] ||
        fail "compiling at O3 should use far more code: pages $used_off -> $used_O3, LLVM functions $llvm_off -> $llvm_O3"
    fi ;;
  golden-iso)
    need_models
    timeout $((T + 10)) "$bareflow" boot --iso --tcg --timeout $T -- generate "$models/stories260K.bin" \
      -z "$models/tok512.bin" -t 0 -n 200 -i "Once upon a time" >"$tmp/out" 2>"$tmp/err"
    status=$?
    expect_status 0
    expect_log "multiboot2 via GRUB"
    cmp "$tmp/out" "$tmp/golden" || fail "stdout is not the golden stories260K text" ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
echo "PASS [$case_name]"
