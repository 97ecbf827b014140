#!/bin/bash
# make_iso.sh OUT.iso KERNEL.elf BAREFLOW [MODELS_DIR]: a GRUB (Multiboot2) ISO that boots the
# unikernel running bareflow; with stories260K available it generates the golden story, else it
# prints bareflow's help.
set -eu
out=$1 kelf=$2 app=$3 models=${4:-}
root=$(mktemp -d /tmp/bf-iso-XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/boot/grub" "$root/boot/m"
cp "$kelf" "$root/boot/bareflow-kernel.elf"
cp "$app" "$root/boot/m/bareflow"
mods="  module2 /boot/m/bareflow bareflow"
cmd='-- bareflow --help'
if [ -n "$models" ] && [ -f "$models/stories260K.bin" ] && [ -f "$models/tok512.bin" ]; then
  cp "$models/stories260K.bin" "$models/tok512.bin" "$root/boot/m/"
  mods="$mods
  module2 /boot/m/stories260K.bin stories260K.bin
  module2 /boot/m/tok512.bin tok512.bin"
  cmd='-- bareflow generate /stories260K.bin -z /tok512.bin -t 0 -n 200 -i "Once upon a time"'
fi
cat >"$root/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
menuentry "BareFlow" {
  multiboot2 /boot/bareflow-kernel.elf $cmd
$mods
  boot
}
CFG
grub-mkrescue -o "$out" "$root" >/dev/null 2>&1
echo "$out: $(stat -c %s "$out") bytes"
