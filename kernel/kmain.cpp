// Kernel entry (from boot/boot.cpp): bring the machine up, then become the application.
#include <stdint.h>

#include "kernel/app/loader.h"
#include "kernel/app/stack.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/serial.h"
#include "kernel/arch/timer.h"
#include "kernel/boot/bootinfo.h"
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
  vm_init();
  apic_virtual_wire();
  const uint64_t t_vm = monotonic_ns();
  bootfs_init(g_boot);
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
