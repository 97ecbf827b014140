// The host side of `bareflow boot` (and of bfboot, the same launcher without the engine): parses
// the boot flags, stages the boot modules in a private directory, writes the argv module, builds
// the QEMU command and runs it, relays the serial ports and maps the exit status. It depends on
// nothing but libc and kernel/lib/cmdline.h (the argv module's layout). No shell is ever run: QEMU
// and grub-mkrescue are started with an argv. See kernel/README.md ("Booting it").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bf::boot {

extern const char kUsage[];

// One guest argument: text reaches the guest byte for byte; a file argument names a host file that
// becomes a boot module and reaches the guest as "/name".
struct GuestArg {
  std::string text;
  bool file = false;
};

enum class Accel { Auto, Kvm, Tcg };

struct Options {
  bool iso = false, verbose = false, strace = false, code_pages = false, pc = false;
  Accel accel = Accel::Auto;
  uint64_t mem = 0;      // guest RAM in bytes (--mem); 0: 256 MiB + 2 x the modules
  std::string mem_text;  // --mem as given, for messages
  int timeout = 600;     // seconds
  std::string app;       // --app; empty: this executable
  std::string kernel_dir;            // --kernel; empty: $BAREFLOW_KERNEL_DIR or beside this executable
  std::vector<std::string> modules;  // --module: extra files, "/basename" in the guest
  std::vector<GuestArg> args;        // the guest's argv after argv0 (everything after "--": text)
  std::string image;                 // --image: an appliance image directory (write_image)
  std::string disk;                  // --disk: the virtio-blk disk's file; empty: no disk
  uint64_t disk_size = 64ull << 20;  // --disk-size: for a disk created now
  bool disk_init = false;            // --disk-init: zero it first
  bool virtio_legacy = false;        // --virtio legacy: the v1 virtio-mmio interface on microvm
};

// An appliance image, as `bareflow export --image DIR` writes it and `bareflow boot --image DIR`
// boots it:
//   DIR/appliance             the application (the exported executable): the first boot module
//   DIR/bareflow-kernel.bin   the kernel for qemu -kernel (Multiboot1), .elf for GRUB (Multiboot2)
//   DIR/weights/NAME          baked files (--bake-weights): boot modules "/NAME" of every boot
//   DIR/argv                  the argv module booted when no guest arguments are given
//   DIR/bareflow.iso          a GRUB ISO of all of it: boots on its own (qemu -cdrom)
// Writes all but DIR/appliance (the caller's, already in place): `weights` are (host file, NAME)
// pairs, `args` the guest's default arguments after argv0. Each file is written beside its place
// and renamed into it. Returns "" or what went wrong (one line).
struct ImageFile {
  std::string host, name;
};
std::string write_image(const std::string& dir, const std::vector<ImageFile>& weights,
                        const std::vector<std::string>& args);
// The name a host file gets as a boot module ("/NAME" in the guest) when its base name is
// usable as one: [A-Za-z0-9._-], not "argv".
bool usable_module_name(const std::string& name);

// Parses the boot flags of argv[1..] up to "--"; what follows becomes o->args (all text). Returns ""
// or "FLAG: problem" (one line); *help is set for -h/--help.
std::string parse_flags(int argc, char** argv, Options* o, bool* help);

// Boots and waits. Returns the guest's exit status; 2 for bad input (one line on stderr, prefixed
// with prog), 124 timeout, 125 no exit status, 128 + signal when SIGINT/SIGTERM/SIGHUP ended it
// (QEMU is killed and waited for first). The staging directory is removed on every path.
int launch(const Options& o, const char* prog);

}  // namespace bf::boot
