#include "kernel/syscall/syscall.h"

#include "kernel/app/loader.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/serial.h"
#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/fs/bootfs.h"
#include "kernel/lib/errno.h"
#include "kernel/lib/exit.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"
#include "kernel/mm/vm.h"
#include "kernel/sched/sched.h"
#include "kernel/syscall/names.h"
#include "kernel/syscall/uaccess.h"

namespace bf::kern {
namespace {

bool g_trace = false;

// ---- user memory -------------------------------------------------------------------------------

bool uread_ok(uint64_t p, uint64_t n) { return user_range_ok(vm_tables(), p, n, Access::kRead); }
bool uwrite_ok(uint64_t p, uint64_t n) { return user_range_ok(vm_tables(), p, n, Access::kWrite); }

// Copies a path from user memory; returns 0 or -EFAULT / -ENAMETOOLONG.
int64_t copy_path(uint64_t up, char* out, uint64_t cap) {
  const int64_t n = user_strnlen(vm_tables(), up, cap);
  if (n < 0) return uread_ok(up, 1) ? -ENAMETOOLONG : -EFAULT;
  memcpy(out, reinterpret_cast<const void*>(up), uint64_t(n) + 1);
  return 0;
}

int64_t put_zeros(uint64_t up, uint64_t n) {
  if (!uwrite_ok(up, n)) return -EFAULT;
  memset(reinterpret_cast<void*>(up), 0, n);
  return 0;
}

template <typename T>
int64_t put_user(uint64_t up, const T& v) {
  if (!uwrite_ok(up, sizeof(T))) return -EFAULT;
  memcpy(reinterpret_cast<void*>(up), &v, sizeof(T));
  return 0;
}

// ---- file descriptors --------------------------------------------------------------------------

constexpr int kMaxFds = 64;
struct Fd {
  bool used;
  int file;  // bootfs index; -1 for the console (0, 1, 2)
  uint64_t off;
};
Fd g_fds[kMaxFds] = {{true, -1, 0}, {true, -1, 0}, {true, -1, 0}};

Fd* get_fd(uint64_t fd) { return fd < uint64_t(kMaxFds) && g_fds[fd].used ? &g_fds[fd] : nullptr; }

struct LinuxStat {
  uint64_t dev, ino, nlink;
  uint32_t mode, uid, gid, pad0;
  uint64_t rdev;
  int64_t size, blksize, blocks;
  uint64_t atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns;
  int64_t reserved[3];
};
static_assert(sizeof(LinuxStat) == 144);

constexpr uint32_t kIfReg = 0100000, kIfDir = 0040000, kIfChr = 0020000;

int64_t fill_stat(int file, bool is_dir, uint64_t ust) {
  LinuxStat st{};
  st.dev = 1;
  st.nlink = 1;
  st.blksize = 4096;
  const uint64_t now = realtime_ns() / 1000000000ull;
  st.atime = st.mtime = st.ctime = now;
  if (is_dir) {
    st.mode = kIfDir | 0555, st.ino = 1, st.nlink = 2;
  } else if (file < 0) {
    st.mode = kIfChr | 0620, st.ino = 2, st.rdev = (136ull << 8);
  } else {
    const BootFile* f = bootfs_file(file);
    st.mode = kIfReg | 0444, st.ino = uint64_t(file) + 16, st.size = int64_t(f->size);
    st.blocks = int64_t(align_up(f->size, 512) / 512);
  }
  return put_user(ust, st);
}

// ---- individual calls --------------------------------------------------------------------------

int64_t sys_read(uint64_t fd, uint64_t buf, uint64_t n) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->file < 0) return fd == 0 ? 0 : -EBADF;  // stdin is empty; stdout/stderr are write-only
  if (!uwrite_ok(buf, n)) return -EFAULT;
  const BootFile* f = bootfs_file(d->file);
  if (d->off >= f->size) return 0;
  const uint64_t k = n < f->size - d->off ? n : f->size - d->off;
  memcpy(reinterpret_cast<void*>(buf), phys_to_ptr(f->phys + d->off), k);
  d->off += k;
  return int64_t(k);
}

int64_t sys_pread(uint64_t fd, uint64_t buf, uint64_t n, uint64_t off) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->file < 0) return -ESPIPE;
  if (int64_t(off) < 0) return -EINVAL;
  if (!uwrite_ok(buf, n)) return -EFAULT;
  const BootFile* f = bootfs_file(d->file);
  if (off >= f->size) return 0;
  const uint64_t k = n < f->size - off ? n : f->size - off;
  memcpy(reinterpret_cast<void*>(buf), phys_to_ptr(f->phys + off), k);
  return int64_t(k);
}

int64_t sys_write(uint64_t fd, uint64_t buf, uint64_t n) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->file >= 0 || fd == 0) return -EBADF;  // boot files are read-only
  if (!uread_ok(buf, n)) return -EFAULT;
  serial::write(fd == 1 ? serial::Port::kStdout : serial::Port::kConsole, reinterpret_cast<const char*>(buf), n);
  return int64_t(n);
}

int64_t sys_writev(uint64_t fd, uint64_t iov, uint64_t cnt) {
  if (cnt > 1024) return -EINVAL;
  if (!uread_ok(iov, cnt * 16)) return -EFAULT;
  const uint64_t* v = reinterpret_cast<const uint64_t*>(iov);
  for (uint64_t i = 0; i < cnt; ++i)
    if (!uread_ok(v[2 * i], v[2 * i + 1])) return -EFAULT;
  int64_t total = 0;
  for (uint64_t i = 0; i < cnt; ++i) {
    const int64_t r = sys_write(fd, v[2 * i], v[2 * i + 1]);
    if (r < 0) return total ? total : r;
    total += r;
  }
  return total;
}

int64_t sys_readv(uint64_t fd, uint64_t iov, uint64_t cnt) {
  if (cnt > 1024) return -EINVAL;
  if (!uread_ok(iov, cnt * 16)) return -EFAULT;
  const uint64_t* v = reinterpret_cast<const uint64_t*>(iov);
  int64_t total = 0;
  for (uint64_t i = 0; i < cnt; ++i) {
    const int64_t r = sys_read(fd, v[2 * i], v[2 * i + 1]);
    if (r < 0) return total ? total : r;
    total += r;
    if (uint64_t(r) < v[2 * i + 1]) break;
  }
  return total;
}

bool is_root(const char* p) { return (p[0] == '/' && p[1] == 0) || (p[0] == '.' && p[1] == 0); }

int64_t sys_openat(uint64_t upath, uint64_t flags) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  const int idx = bootfs_lookup(path);
  if (flags & 0x43) return idx >= 0 || is_root(path) ? -EROFS : (flags & 0x40 ? -EROFS : -ENOENT);  // write, create
  if (is_root(path)) return -EISDIR;  // no directory reading
  if (idx < 0) return -ENOENT;
  if (flags & 0x10000) return -ENOTDIR;  // O_DIRECTORY
  for (int fd = 3; fd < kMaxFds; ++fd)
    if (!g_fds[fd].used) {
      g_fds[fd] = {true, idx, 0};
      return fd;
    }
  return -EMFILE;
}

int64_t sys_close(uint64_t fd) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (fd > 2) d->used = false;  // the console descriptors stay: writes to them must keep working
  return 0;
}

int64_t sys_fstat(uint64_t fd, uint64_t ust) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  return fill_stat(d->file, false, ust);
}

int64_t sys_newfstatat(int64_t dirfd, uint64_t upath, uint64_t ust, uint64_t flags) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (path[0] == 0) {
    if (!(flags & 0x1000)) return -ENOENT;  // AT_EMPTY_PATH
    return dirfd == -100 ? fill_stat(0, true, ust) : sys_fstat(uint64_t(dirfd), ust);
  }
  if (is_root(path)) return fill_stat(0, true, ust);
  const int idx = bootfs_lookup(path);
  if (idx < 0) return -ENOENT;
  return fill_stat(idx, false, ust);
}

int64_t sys_lseek(uint64_t fd, int64_t off, uint64_t whence) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->file < 0) return -ESPIPE;
  const int64_t size = int64_t(bootfs_file(d->file)->size);
  int64_t base = whence == 0 ? 0 : whence == 1 ? int64_t(d->off) : whence == 2 ? size : -1;
  if (base < 0) return -EINVAL;
  if (base + off < 0) return -EINVAL;
  d->off = uint64_t(base + off);
  return base + off;
}

int64_t sys_mmap(uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags, uint64_t fd, uint64_t off) {
  constexpr uint64_t kShared = 1, kFixed = 0x10, kAnon = 0x20, kFixedNoreplace = 0x100000;
  const bool fixed = flags & (kFixed | kFixedNoreplace);
  if (len == 0 || (off & (kPageSize - 1)) || (fixed && (addr & (kPageSize - 1)))) return -EINVAL;
  if (len > (1ull << 40)) return -ENOMEM;
  if ((flags & kFixedNoreplace) && vm_range_used(addr, align_up(len, kPageSize))) return -EEXIST;
  const uint64_t pflags = vm_prot_flags(int(prot));
  if (flags & kAnon) return vm_map_anon(addr, len, pflags, fixed);
  Fd* d = get_fd(fd);
  if (!d || d->file < 0) return -EBADF;
  const BootFile* f = bootfs_file(d->file);
  if (off >= align_up(f->size, kPageSize)) return -EINVAL;
  const uint64_t avail = align_up(f->size, kPageSize) - off;
  const uint64_t flen = align_up(len, kPageSize) < avail ? align_up(len, kPageSize) : avail;
  if (!(prot & 2)) return vm_map_frames(addr, f->phys + off, flen, pflags, fixed);  // zero-copy
  if (flags & kShared) return -EACCES;  // a writable shared mapping of a read-only file
  // Private writable mapping: a copy.
  const int64_t va = vm_map_anon(addr, len, vm_prot_flags(3), fixed);
  if (va < 0) return va;
  const uint64_t n = f->size - off < len ? f->size - off : len;
  memcpy(reinterpret_cast<void*>(va), phys_to_ptr(f->phys + off), n);
  if (vm_protect(uint64_t(va), len, pflags) < 0) return -ENOMEM;
  return va;
}

int64_t sys_mremap(uint64_t old, uint64_t old_len, uint64_t new_len, uint64_t flags) {
  old_len = align_up(old_len, kPageSize), new_len = align_up(new_len, kPageSize);
  if ((old & (kPageSize - 1)) || new_len == 0) return -EINVAL;
  // Outside the user window nothing is mapped (Linux: EFAULT); without this a shrink "succeeded"
  // and returned the kernel address (found by the syscall fuzzer, seed 11).
  if (old < kUserMin || old >= kUserTop || old_len > kUserTop - old) return -EFAULT;
  if (new_len <= old_len) {
    if (new_len < old_len) vm_unmap(old + new_len, old_len - new_len);
    return int64_t(old);
  }
  if (!(flags & 1)) return -ENOMEM;  // cannot grow in place without MREMAP_MAYMOVE
  if (!uread_ok(old, old_len)) return -EFAULT;
  const int64_t va = vm_map_anon(0, new_len, vm_prot_flags(3), false);
  if (va < 0) return va;
  memcpy(reinterpret_cast<void*>(va), reinterpret_cast<const void*>(old), old_len);
  vm_unmap(old, old_len);
  return va;
}

int64_t sys_madvise(uint64_t addr, uint64_t len, uint64_t advice) {
  if (addr & (kPageSize - 1)) return -EINVAL;
  // MADV_DONTNEED on private anonymous memory must read back as zeros afterwards.
  if (advice == 4 && uwrite_ok(addr, len)) memset(reinterpret_cast<void*>(addr), 0, len);
  return 0;
}

int64_t sys_readlink(uint64_t upath, uint64_t buf, uint64_t size) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (kstrcmp(path, "/proc/self/exe") != 0) return bootfs_lookup(path) >= 0 ? -EINVAL : -ENOENT;
  const char* exe = bootfs_exe_path();
  uint64_t n = strlen(exe);
  if (n > size) n = size;
  if (!uwrite_ok(buf, n)) return -EFAULT;
  memcpy(reinterpret_cast<void*>(buf), exe, n);
  return int64_t(n);
}

int64_t sys_access(uint64_t upath, uint64_t mode) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (!is_root(path) && bootfs_lookup(path) < 0) return -ENOENT;
  return (mode & 2) ? -EROFS : 0;
}

int64_t sys_uname(uint64_t ubuf) {
  struct Utsname {
    char f[6][65];
  } u{};
  const char* v[6] = {"Linux", "bareflow", "6.1.0-bareflow", "#1 BareFlow unikernel", "x86_64", "(none)"};
  for (int i = 0; i < 6; ++i) kstrlcpy(u.f[i], v[i], 65);
  return put_user(ubuf, u);
}

int64_t sys_arch_prctl(uint64_t code, uint64_t addr) {
  switch (code) {
    case 0x1002:  // ARCH_SET_FS
    case 0x1001:  // ARCH_SET_GS
      if (addr >= kUserTop) return -EPERM;
      x86::wrmsr(code == 0x1002 ? x86::kMsrFsBase : x86::kMsrGsBase, addr);
      return 0;
    case 0x1003: return put_user(addr, x86::rdmsr(x86::kMsrFsBase));
    case 0x1004: return put_user(addr, x86::rdmsr(x86::kMsrGsBase));
    default: return -EINVAL;  // CET and friends: not supported
  }
}

int64_t sys_prlimit(uint64_t resource, uint64_t newp, uint64_t oldp) {
  (void)newp;  // limits are accepted and ignored
  if (resource > 15) return -EINVAL;
  struct {
    uint64_t cur, max;
  } lim{~0ull, ~0ull};
  if (resource == 3) lim.cur = kStackSize;                // RLIMIT_STACK
  if (resource == 7) lim.cur = lim.max = uint64_t(kMaxFds);  // RLIMIT_NOFILE
  if (oldp) return put_user(oldp, lim);
  return 0;
}

uint64_t g_rand_state = 0;
uint64_t next_random() {
  if (g_cpu.rdrand) {
    uint64_t v;
    unsigned char ok;
    for (int i = 0; i < 10; ++i) {
      asm volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
      if (ok) return v;
    }
  }
  if (!g_rand_state) g_rand_state = x86::rdtsc() | 1;
  g_rand_state ^= g_rand_state << 13, g_rand_state ^= g_rand_state >> 7, g_rand_state ^= g_rand_state << 17;
  return g_rand_state;
}

int64_t sys_getrandom(uint64_t buf, uint64_t len) {
  if (len > (32u << 20)) len = 32u << 20;
  if (!uwrite_ok(buf, len)) return -EFAULT;
  for (uint64_t i = 0; i < len; i += 8) {
    const uint64_t v = next_random();
    memcpy(reinterpret_cast<char*>(buf) + i, &v, len - i < 8 ? len - i : 8);
  }
  return int64_t(len);
}

int64_t sys_clock_gettime(uint64_t clk, uint64_t uts) {
  if (clk > 11) return -EINVAL;
  const bool wall = clk == 0 || clk == 5 || clk == 8 || clk == 11;
  const uint64_t ns = wall ? realtime_ns() : monotonic_ns();
  const uint64_t ts[2] = {ns / 1000000000ull, ns % 1000000000ull};
  return put_user(uts, ts);
}

int64_t sys_nanosleep(uint64_t ureq) {
  if (!uread_ok(ureq, 16)) return -EFAULT;
  const uint64_t* t = reinterpret_cast<const uint64_t*>(ureq);
  if (t[1] >= 1000000000ull || int64_t(t[0]) < 0) return -EINVAL;
  return sched_sleep_ns((t[0] > 3600 ? 3600 : t[0]) * 1000000000ull + t[1]);
}

[[noreturn]] void die_by_signal(uint64_t sig) {
  klog("application killed by signal %lu%s", sig, sig == 6 ? " (SIGABRT)" : "");
  machine_exit(int(128 + (sig & 0x7F)));
}

}  // namespace

TrapFrame* g_syscall_trap_frame = nullptr;

void syscall_set_trace(bool on) { g_trace = on; }

}  // namespace bf::kern

using namespace bf::kern;

extern "C" [[noreturn]] void syscall_bad_return(uint64_t rip) {
  klog("application fault: system call return to a non-canonical address 0x%lx", rip);
  machine_exit(128 + 11);
}

extern "C" int64_t syscall_dispatch(SyscallFrame* f) {
  const uint64_t a0 = f->a0, a1 = f->a1, a2 = f->a2, a3 = f->a3, a4 = f->a4, a5 = f->a5;
  int64_t r;
  switch (f->nr) {
    case 0: r = sys_read(a0, a1, a2); break;
    case 1: r = sys_write(a0, a1, a2); break;
    case 2: r = sys_openat(a0, a1); break;  // open
    case 3: r = sys_close(a0); break;
    case 4:  // stat
    case 6: r = sys_newfstatat(-100, a0, a1, 0); break;  // lstat
    case 5: r = sys_fstat(a0, a1); break;
    case 8: r = sys_lseek(a0, int64_t(a1), a2); break;
    case 9: r = sys_mmap(a0, a1, a2, a3, a4, a5); break;
    case 10: {
      r = vm_protect(a0, a1, vm_prot_flags(int(a2)));
      break;
    }
    case 11: r = vm_unmap(a0, a1); break;
    case 12: r = int64_t(vm_brk(a0)); break;
    case 13:  // rt_sigaction: accepted, inert (no signals are ever delivered)
      r = a2 ? put_zeros(a2, 32) : 0;
      break;
    case 14:  // rt_sigprocmask
      r = a2 ? put_user(a2, uint64_t(0)) : 0;
      break;
    case 131: {  // sigaltstack: reported disabled (SS_DISABLE)
      const struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss{0, 2, 0, 0};
      r = a1 ? put_user(a1, ss) : 0;
      break;
    }
    case 16: r = get_fd(a0) ? -ENOTTY : -EBADF; break;  // ioctl: no terminals (TCGETS -> ENOTTY)
    case 17: r = sys_pread(a0, a1, a2, a3); break;
    case 19: r = sys_readv(a0, a1, a2); break;
    case 20: r = sys_writev(a0, a1, a2); break;
    case 21: r = sys_access(a0, a1); break;
    case 24: r = sched_yield_call(); break;
    case 25: r = sys_mremap(a0, a1, a2, a3); break;
    case 28: r = sys_madvise(a0, a1, a2); break;
    case 35: r = sys_nanosleep(a0); break;
    case 39: r = 1; break;  // getpid: the one process
    case 186: r = sched_current_tid(); break;
    case 56: r = sched_clone(g_syscall_trap_frame, a0, a1, a2, a3, a4); break;
    case 435: r = sched_clone3(g_syscall_trap_frame, a0, a1); break;
    case 110: r = 0; break;           // getppid
    case 102: case 104: case 107: case 108: r = 0; break;  // get[e]uid, get[e]gid: root
    case 60: r = sched_exit_thread(int(a0 & 0xFF)); break;  // exit: this thread
    case 231:                                                 // exit_group
      app_report_code_pages();
      machine_exit(int(a0 & 0xFF));
    case 62: case 200: case 234: {                        // kill, tkill, tgkill
      const uint64_t sig = f->nr == 234 ? a2 : a1;
      if (sig == 0) r = 0;
      else die_by_signal(sig);
      break;
    }
    case 63: r = sys_uname(a0); break;
    case 72: {  // fcntl
      Fd* d = get_fd(a0);
      r = !d ? -EBADF : (a1 == 1 || a1 == 2) ? 0 : a1 == 3 ? (a0 == 1 || a0 == 2 ? 1 : 0) : -EINVAL;
      break;
    }
    case 79: {  // getcwd
      const char root[2] = {'/', 0};
      r = a1 < 2 ? -ERANGE : put_user(a0, root);
      if (r == 0) r = 2;
      break;
    }
    case 89: r = sys_readlink(a0, a1, a2); break;
    case 96: {  // gettimeofday
      const uint64_t ns = realtime_ns();
      const uint64_t tv[2] = {ns / 1000000000ull, ns % 1000000000ull / 1000};
      r = a0 ? put_user(a0, tv) : 0;
      break;
    }
    case 97: r = sys_prlimit(a0, 0, a1); break;  // getrlimit
    case 158: r = sys_arch_prctl(a0, a1); break;
    case 201: {  // time
      const uint64_t s = realtime_ns() / 1000000000ull;
      r = a0 ? put_user(a0, s) : 0;
      if (r == 0) r = int64_t(s);
      break;
    }
    case 202: r = sched_futex(a0, a1, a2, a3, a5); break;
    case 204:  // sched_getaffinity: one CPU
      r = a1 < 8 ? -EINVAL : put_user(a2, uint64_t(1));
      if (r == 0) r = 8;
      break;
    case 218: r = sched_current_tid(); break;  // set_tid_address
    case 228: r = sys_clock_gettime(a0, a1); break;
    case 229: {  // clock_getres: 1 ns
      const uint64_t res[2] = {0, 1};
      r = a1 ? put_user(a1, res) : 0;
      break;
    }
    case 230: r = sys_nanosleep(a2); break;  // clock_nanosleep (relative only)
    case 257: r = sys_openat(a1, a2); break;
    case 262: r = sys_newfstatat(int64_t(a0), a1, a2, a3); break;
    case 267: r = sys_readlink(a1, a2, a3); break;  // readlinkat
    case 269: case 439: r = sys_access(a1, a2); break;  // faccessat, faccessat2
    case 273: r = 0; break;  // set_robust_list
    case 302: r = sys_prlimit(a1, a2, a3); break;
    case 318: r = sys_getrandom(a0, a1); break;
    case 334: r = -ENOSYS; break;  // rseq: glibc copes without it
    default:
      klog("syscall %lu (%s) is not implemented: -ENOSYS", f->nr, syscall_name(f->nr));
      r = -ENOSYS;
  }
  if (g_trace) klog("strace: [%d] %s(0x%lx, 0x%lx, 0x%lx) = %ld", sched_current_tid(), syscall_name(f->nr), a0, a1, a2, r);
  return r;
}
