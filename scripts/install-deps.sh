#!/bin/sh
# Installs the Debian 12 packages BareFlow needs, only those missing. Silent when nothing is.
set -e
PKGS="cmake make g++ clang-19 lld-19 llvm-19-dev libclang-rt-19-dev libzstd-dev libgtest-dev \
python3 python3-numpy qemu-system-x86 grub-pc-bin grub-common xorriso mtools libboost-dev nlohmann-json3-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "bareflow: installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "bareflow: run as root (or install them yourself): apt-get install$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || true
apt-get install -y -q $missing >/dev/null
