// Kernel entry (from boot/boot.cpp): bring the machine up, then become the application.
#include <stdint.h>

#include "kernel/app/loader.h"
#include "kernel/app/stack.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/serial.h"
#include "kernel/arch/timer.h"
#include "kernel/boot/bootinfo.h"
#include "kernel/dev/virtio_blk.h"
#include "kernel/fs/bootfs.h"
#include "kernel/lib/cmdline.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"
#include "kernel/mm/vm.h"
#include "kernel/sched/sched.h"
#include "kernel/syscall/syscall.h"

extern "C" void (*__init_array_start[])();
extern "C" void (*__init_array_end[])();

namespace bf::kern {
namespace {

BootInfo g_boot;
char g_argbuf[kCmdlineMax];
const char* g_argv[kMaxArgs];

// Too little RAM: QEMU then places modules past its end, or nothing is left for the page tables
// and the application's stack. Say so rather than fail an allocation later.
void check_memory() {
  for (unsigned i = 0; i < g_boot.nmods; ++i) {
    const BootModule& m = g_boot.mods[i];
    bool in_ram = false;
    for (unsigned r = 0; r < g_boot.navail && !in_ram; ++r)
      in_ram = m.start >= g_boot.avail[r].base && m.end <= g_boot.avail[r].base + g_boot.avail[r].len;
    if (!in_ram)
      panic("not enough memory: module %s (%lu MiB) lies outside the RAM; boot with more memory", m.name,
            (m.end - m.start) >> 20);
  }
  constexpr uint64_t kMinFree = 16ull << 20;  // page tables, the 8 MiB stack, the app's first data
  if (phys_free_bytes() < kMinFree)
    panic("not enough memory: %lu MiB free after the kernel and the modules, %lu MiB needed; boot with more memory",
          phys_free_bytes() >> 20, kMinFree >> 20);
}

// argv from the argv module (lib/cmdline.h) when there is one, as `bareflow boot` writes it. The
// module leaves the list of files; its memory stays reserved (phys_init has run) and argv points
// into it.
void take_argv_module(unsigned* argc) {
  for (unsigned i = 0; i < g_boot.nmods; ++i) {
    const BootModule& m = g_boot.mods[i];
    const char* data = static_cast<const char*>(phys_to_ptr(m.start));
    if (!is_argv_module(data, m.end - m.start)) continue;
    if (*argc) panic("bad boot: arguments both on the command line (or in another argv module) and in module %s", m.name);
    if (const char* err = parse_argv_module(data, m.end - m.start, g_argv, kMaxArgs, argc)) panic("bad boot: %s", err);
    for (unsigned j = i + 1; j < g_boot.nmods; ++j) g_boot.mods[j - 1] = g_boot.mods[j];
    --g_boot.nmods, --i;
  }
}

}  // namespace
}  // namespace bf::kern

using namespace bf::kern;

extern "C" [[noreturn]] void kmain(uint32_t magic, uint32_t info) {
  serial::init();
  klog("BareFlow kernel starting");
  if (const char* err = parse_boot_info(magic, info, &g_boot)) panic("bad boot: %s", err);
  for (auto** c = __init_array_start; c < __init_array_end; ++c) (*c)();
  CmdlineOptions opts;
  unsigned argc = 0;
  if (const char* err = parse_cmdline(g_boot.cmdline, g_argbuf, sizeof g_argbuf, g_argv, kMaxArgs, &argc, &opts))
    panic("bad command line: %s", err);
  g_no_smep = opts.nosmep;
  cpu_init();
  timer_init();
  // Under QEMU's own Multiboot loader nothing has written RAM above its modules and the boot
  // information (which it places right after the kernel): that memory is known zero.
  uint64_t clean_above = ~0ull;
  if (kstrcmp(g_boot.loader, "qemu") == 0) {
    clean_above = align_up(uint64_t(info) + (1ull << 16), kLargePageSize);
    for (unsigned i = 0; i < g_boot.nmods; ++i)
      if (align_up(g_boot.mods[i].end, kLargePageSize) > clean_above) clean_above = align_up(g_boot.mods[i].end, kLargePageSize);
  }
  phys_init(g_boot, clean_above);
  check_memory();
  take_argv_module(&argc);
  vm_init();
  apic_virtual_wire();
  const uint64_t t_vm = monotonic_ns();
  bootfs_init(g_boot);
  blk_init();
  for (unsigned i = 0; i < g_boot.nmods; ++i) {
    // Bytes after a module's end up to its page boundary belong to no module: zero them so a
    // file mapping reads zeros past the end of the file, as on Linux.
    const uint64_t e = g_boot.mods[i].end, pe = align_up(e, kPageSize);
    if (pe > e) memset(phys_to_ptr(e), 0, pe - e);
  }
  syscall_set_trace(opts.strace);
  app_track_code_pages(opts.codepages);
  klog("%s via %s: %u module(s), %lu MiB free RAM, TSC %lu MHz, CPU %s%s%s, stdout on %s", g_boot.protocol,
       g_boot.loader[0] ? g_boot.loader : "?", g_boot.nmods, phys_free_bytes() >> 20, tsc_hz() / 1000000,
       g_cpu.vendor, g_cpu.avx ? " AVX" : "", g_cpu.avx512 ? " AVX-512" : "",
       serial::has_stdout_port() ? "COM2" : "COM1");
  klog("memory ready at %lu ms (page tables built)", t_vm / 1000000);
  for (int i = 0; i < bootfs_count(); ++i)
    klog("file /%s: %lu bytes", bootfs_file(i)->name, bootfs_file(i)->size);
  if (g_boot.nmods == 0) panic("no application: boot with the bareflow executable as the first module");
  if (argc == 0) g_argv[argc++] = bootfs_file(0)->name;
  const int exe = bootfs_lookup(g_argv[0]);
  if (exe < 0) panic("bad command line: application '%s' is not a boot module", g_argv[0]);
  bootfs_set_exe(exe);
  sched_init();
  app_run(exe, argc, g_argv);
}
