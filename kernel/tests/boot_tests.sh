#!/bin/bash
# Boot tests: each case boots the unikernel under QEMU TCG (every run has a timeout) and asserts
# on the guest's stdout, the kernel log and the exit status.
#   boot_tests.sh CASE BFBOOT GUEST_TEST KERNEL_DIR [BAREFLOW] [MODELS_DIR]
set -u
case_name=$1 bfboot=$2 guest=$3 kdir=$4 bareflow=${5:-} models=${6:-}
tmp=$(mktemp -d /tmp/bf-boot-test-XXXXXX)
/usr/bin/python3 "$(dirname "$0")/../../tests/tools/golden_text.py" > "$tmp/golden"
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
