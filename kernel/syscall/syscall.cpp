#include "kernel/syscall/syscall.h"

#include "kernel/app/loader.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/serial.h"
#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/dev/virtio_blk.h"
#include "kernel/fs/bootfs.h"
#include "kernel/lib/errno.h"
#include "kernel/lib/exit.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"
#include "kernel/mm/vm.h"
#include "kernel/sched/sched.h"
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
enum class FdKind : uint8_t { Free, Console, BootFile, Disk };
struct Fd {
  FdKind kind;
  int file;  // bootfs index (BootFile)
  uint64_t off;
  bool writable;  // Disk opened O_WRONLY or O_RDWR
};
Fd g_fds[kMaxFds] = {{FdKind::Console, -1, 0, false}, {FdKind::Console, -1, 0, true}, {FdKind::Console, -1, 0, true}};

Fd* get_fd(uint64_t fd) { return fd < uint64_t(kMaxFds) && g_fds[fd].kind != FdKind::Free ? &g_fds[fd] : nullptr; }

// The disk, when the machine has one, is the writable file /state (kernel/dev/virtio_blk.h). Its
// size is the disk's: it cannot grow or shrink.
bool is_disk_path(const char* p) {
  return blk_info().state != BlkState::Absent && kstrcmp(bootfs_strip_root(p), "state") == 0;
}

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

int64_t fill_stat(FdKind kind, int file, bool is_dir, uint64_t ust) {
  LinuxStat st{};
  st.dev = 1;
  st.nlink = 1;
  st.blksize = 4096;
  const uint64_t now = realtime_ns() / 1000000000ull;
  st.atime = st.mtime = st.ctime = now;
  if (is_dir) {
    st.mode = kIfDir | 0555, st.ino = 1, st.nlink = 2;
  } else if (kind == FdKind::Console) {
    st.mode = kIfChr | 0620, st.ino = 2, st.rdev = (136ull << 8);
  } else if (kind == FdKind::Disk) {
    const BlkInfo& b = blk_info();
    st.mode = kIfReg | (b.read_only ? 0444 : 0644), st.ino = 3, st.size = int64_t(b.capacity);
    st.blocks = int64_t(b.capacity / 512);
  } else {
    const BootFile* f = bootfs_file(file);
    st.mode = kIfReg | 0444, st.ino = uint64_t(file) + 16, st.size = int64_t(f->size);
    st.blocks = int64_t(align_up(f->size, 512) / 512);
  }
  return put_user(ust, st);
}

// ---- individual calls --------------------------------------------------------------------------

// pread on the disk: what lies within its size.
int64_t disk_read(uint64_t buf, uint64_t n, uint64_t off) {
  if (!uwrite_ok(buf, n)) return -EFAULT;
  const uint64_t cap = blk_info().capacity;
  if (off >= cap) return 0;
  const uint64_t k = n < cap - off ? n : cap - off;
  const int64_t r = blk_read(off, reinterpret_cast<void*>(buf), k);
  return r < 0 ? r : int64_t(k);
}

// pwrite on the disk: past its end there is no space (a write that reaches it is cut short).
int64_t disk_write(const Fd& d, uint64_t buf, uint64_t n, uint64_t off) {
  if (!d.writable) return -EBADF;
  if (!uread_ok(buf, n)) return -EFAULT;
  if (n == 0) return 0;
  const uint64_t cap = blk_info().capacity;
  if (off >= cap) return -ENOSPC;
  const uint64_t k = n < cap - off ? n : cap - off;
  const int64_t r = blk_write(off, reinterpret_cast<const void*>(buf), k);
  return r < 0 ? r : int64_t(k);
}

int64_t sys_read(uint64_t fd, uint64_t buf, uint64_t n) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->kind == FdKind::Console) return fd == 0 ? 0 : -EBADF;  // stdin is empty; stdout/stderr are write-only
  if (d->kind == FdKind::Disk) {
    const int64_t r = disk_read(buf, n, d->off);
    if (r > 0) d->off += uint64_t(r);
    return r;
  }
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
  if (d->kind == FdKind::Console) return -ESPIPE;
  if (int64_t(off) < 0) return -EINVAL;
  if (d->kind == FdKind::Disk) return disk_read(buf, n, off);
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
  if (d->kind == FdKind::Disk) {
    const int64_t r = disk_write(*d, buf, n, d->off);
    if (r > 0) d->off += uint64_t(r);
    return r;
  }
  if (d->kind != FdKind::Console || fd == 0) return -EBADF;  // boot files are read-only
  if (!uread_ok(buf, n)) return -EFAULT;
  serial::write(fd == 1 ? serial::Port::kStdout : serial::Port::kConsole, reinterpret_cast<const char*>(buf), n);
  return int64_t(n);
}

int64_t sys_pwrite(uint64_t fd, uint64_t buf, uint64_t n, uint64_t off) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->kind == FdKind::Console) return -ESPIPE;
  if (int64_t(off) < 0) return -EINVAL;
  return d->kind == FdKind::Disk ? disk_write(*d, buf, n, off) : -EBADF;
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

constexpr int64_t kAtFdCwd = -100;  // AT_FDCWD: "relative to the working directory", here /

bool is_root(const char* p) { return (p[0] == '/' && p[1] == 0) || (p[0] == '.' && p[1] == 0); }

int64_t sys_openat(uint64_t upath, uint64_t flags) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (is_disk_path(path)) {
    const uint64_t access = flags & 3;
    if ((flags & 0x80) && (flags & 0x40)) return -EEXIST;  // O_CREAT|O_EXCL: it exists
    if (flags & 0x10000) return -ENOTDIR;
    if (access != 0 && blk_info().read_only) return -EROFS;
    // O_TRUNC is ignored, as Linux ignores it on a block device.
    for (int fd = 3; fd < kMaxFds; ++fd)
      if (g_fds[fd].kind == FdKind::Free) {
        g_fds[fd] = {FdKind::Disk, -1, 0, access != 0};
        return fd;
      }
    return -EMFILE;
  }
  const int idx = bootfs_lookup(path);
  if (flags & 0x43) return idx >= 0 || is_root(path) ? -EROFS : (flags & 0x40 ? -EROFS : -ENOENT);  // write, create
  if (is_root(path)) return -EISDIR;  // no directory reading
  if (idx < 0) return -ENOENT;
  if (flags & 0x10000) return -ENOTDIR;  // O_DIRECTORY
  for (int fd = 3; fd < kMaxFds; ++fd)
    if (g_fds[fd].kind == FdKind::Free) {
      g_fds[fd] = {FdKind::BootFile, idx, 0, false};
      return fd;
    }
  return -EMFILE;
}

int64_t sys_close(uint64_t fd) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (fd > 2) d->kind = FdKind::Free;  // the console descriptors stay: writes to them must keep working
  return 0;
}

int64_t sys_fstat(uint64_t fd, uint64_t ust) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  return fill_stat(d->kind, d->file, false, ust);
}

int64_t sys_newfstatat(int64_t dirfd, uint64_t upath, uint64_t ust, uint64_t flags) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (path[0] == 0) {
    if (!(flags & 0x1000)) return -ENOENT;  // AT_EMPTY_PATH
    return dirfd == kAtFdCwd ? fill_stat(FdKind::Free, 0, true, ust) : sys_fstat(uint64_t(dirfd), ust);
  }
  if (is_root(path)) return fill_stat(FdKind::Free, 0, true, ust);
  if (is_disk_path(path)) return fill_stat(FdKind::Disk, -1, false, ust);
  const int idx = bootfs_lookup(path);
  if (idx < 0) return -ENOENT;
  return fill_stat(FdKind::BootFile, idx, false, ust);
}

int64_t sys_lseek(uint64_t fd, int64_t off, uint64_t whence) {
  Fd* d = get_fd(fd);
  if (!d) return -EBADF;
  if (d->kind == FdKind::Console) return -ESPIPE;
  const int64_t size = int64_t(d->kind == FdKind::Disk ? blk_info().capacity : bootfs_file(d->file)->size);
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
  if (!d || d->kind == FdKind::Console) return -EBADF;
  if (d->kind == FdKind::Disk) return -ENODEV;  // the disk is read and written, never mapped
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
  if (kstrcmp(path, "/proc/self/exe") != 0) return bootfs_lookup(path) >= 0 || is_disk_path(path) ? -EINVAL : -ENOENT;
  const char* exe = bootfs_exe_path();
  uint64_t n = strlen(exe);
  if (n > size) n = size;
  if (!uwrite_ok(buf, n)) return -EFAULT;
  memcpy(reinterpret_cast<void*>(buf), exe, n);
  return int64_t(n);
}

// The boot files and the root are read-only and there are no other folders: an existing name is
// EEXIST, anything else EROFS (what a program creating a cache folder expects to handle quietly).
int64_t sys_mkdir(uint64_t upath) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  return is_root(path) || is_disk_path(path) || bootfs_lookup(path) >= 0 ? -EEXIST : -EROFS;
}

int64_t sys_access(uint64_t upath, uint64_t mode) {
  char path[256];
  if (const int64_t r = copy_path(upath, path, sizeof path)) return r;
  if (is_disk_path(path)) return (mode & 2) && blk_info().read_only ? -EROFS : 0;
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

// ---- the Linux entry points: argument registers -> the calls above ------------------------------
// One linux_<name> per BF_SYSCALL in syscalls.def.

int64_t linux_read(const SyscallFrame& f) { return sys_read(f.a0, f.a1, f.a2); }
int64_t linux_write(const SyscallFrame& f) { return sys_write(f.a0, f.a1, f.a2); }
int64_t linux_open(const SyscallFrame& f) { return sys_openat(f.a0, f.a1); }
int64_t linux_close(const SyscallFrame& f) { return sys_close(f.a0); }
int64_t linux_stat(const SyscallFrame& f) { return sys_newfstatat(kAtFdCwd, f.a0, f.a1, 0); }
int64_t linux_fstat(const SyscallFrame& f) { return sys_fstat(f.a0, f.a1); }
int64_t linux_lstat(const SyscallFrame& f) { return sys_newfstatat(kAtFdCwd, f.a0, f.a1, 0); }
int64_t linux_lseek(const SyscallFrame& f) { return sys_lseek(f.a0, int64_t(f.a1), f.a2); }
int64_t linux_mmap(const SyscallFrame& f) { return sys_mmap(f.a0, f.a1, f.a2, f.a3, f.a4, f.a5); }
int64_t linux_mprotect(const SyscallFrame& f) { return vm_protect(f.a0, f.a1, vm_prot_flags(int(f.a2))); }
int64_t linux_munmap(const SyscallFrame& f) { return vm_unmap(f.a0, f.a1); }
int64_t linux_brk(const SyscallFrame& f) { return int64_t(vm_brk(f.a0)); }
// Signal calls are accepted and inert: no signal is ever delivered.
int64_t linux_rt_sigaction(const SyscallFrame& f) { return f.a2 ? put_zeros(f.a2, 32) : 0; }
int64_t linux_rt_sigprocmask(const SyscallFrame& f) { return f.a2 ? put_user(f.a2, uint64_t(0)) : 0; }
int64_t linux_sigaltstack(const SyscallFrame& f) {  // reported disabled (SS_DISABLE)
  const struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss{0, 2, 0, 0};
  return f.a1 ? put_user(f.a1, ss) : 0;
}
int64_t linux_ioctl(const SyscallFrame& f) { return get_fd(f.a0) ? -ENOTTY : -EBADF; }  // no terminals (TCGETS -> ENOTTY)
int64_t linux_pread64(const SyscallFrame& f) { return sys_pread(f.a0, f.a1, f.a2, f.a3); }
int64_t linux_pwrite64(const SyscallFrame& f) { return sys_pwrite(f.a0, f.a1, f.a2, f.a3); }
int64_t linux_readv(const SyscallFrame& f) { return sys_readv(f.a0, f.a1, f.a2); }
int64_t linux_writev(const SyscallFrame& f) { return sys_writev(f.a0, f.a1, f.a2); }
int64_t linux_access(const SyscallFrame& f) { return sys_access(f.a0, f.a1); }
int64_t linux_mkdir(const SyscallFrame& f) { return sys_mkdir(f.a0); }
int64_t linux_sched_yield(const SyscallFrame&) { return sched_yield_call(); }
int64_t linux_mremap(const SyscallFrame& f) { return sys_mremap(f.a0, f.a1, f.a2, f.a3); }
int64_t linux_madvise(const SyscallFrame& f) { return sys_madvise(f.a0, f.a1, f.a2); }
int64_t linux_nanosleep(const SyscallFrame& f) { return sys_nanosleep(f.a0); }
int64_t linux_getpid(const SyscallFrame&) { return 1; }  // the one process
int64_t linux_clone(const SyscallFrame& f) { return sched_clone(g_syscall_trap_frame, f.a0, f.a1, f.a2, f.a3, f.a4); }
int64_t linux_exit(const SyscallFrame& f) { return sched_exit_thread(int(f.a0 & 0xFF)); }  // this thread
int64_t send_signal(uint64_t sig) {
  if (sig != 0) die_by_signal(sig);
  return 0;
}
int64_t linux_kill(const SyscallFrame& f) { return send_signal(f.a1); }
int64_t linux_uname(const SyscallFrame& f) { return sys_uname(f.a0); }
int64_t linux_fcntl(const SyscallFrame& f) {
  const Fd* d = get_fd(f.a0);
  if (!d) return -EBADF;
  if (f.a1 == 1 || f.a1 == 2) return 0;  // F_GETFD, F_SETFD
  if (f.a1 == 3)                          // F_GETFL: O_WRONLY, O_RDWR or O_RDONLY
    return d->kind == FdKind::Console ? (f.a0 == 0 ? 0 : 1) : d->kind == FdKind::Disk && d->writable ? 2 : 0;
  if (f.a1 == 4) return 0;  // F_SETFL: O_NONBLOCK, O_APPEND... change nothing here (no I/O ever blocks)
  return -EINVAL;
}
// One process: every lock is granted.
int64_t linux_flock(const SyscallFrame& f) { return get_fd(f.a0) ? 0 : -EBADF; }
// The disk's write cache is flushed (VIRTIO_BLK_T_FLUSH); boot files have nothing to flush.
int64_t linux_fsync(const SyscallFrame& f) {
  const Fd* d = get_fd(f.a0);
  if (!d) return -EBADF;
  return d->kind == FdKind::Disk ? blk_flush() : d->kind == FdKind::Console ? -EINVAL : 0;
}
int64_t linux_fdatasync(const SyscallFrame& f) { return linux_fsync(f); }
// A disk keeps its size: truncating within it changes nothing (the store only reads what its
// superblock says it wrote), growing past it is EFBIG.
int64_t linux_ftruncate(const SyscallFrame& f) {
  const Fd* d = get_fd(f.a0);
  if (!d) return -EBADF;
  if (d->kind != FdKind::Disk || !d->writable) return -EINVAL;
  if (int64_t(f.a1) < 0) return -EINVAL;
  return f.a1 > blk_info().capacity ? -EFBIG : 0;
}
int64_t linux_getcwd(const SyscallFrame& f) {
  const char root[2] = {'/', 0};
  const int64_t r = f.a1 < 2 ? -ERANGE : put_user(f.a0, root);
  return r == 0 ? 2 : r;
}
int64_t linux_readlink(const SyscallFrame& f) { return sys_readlink(f.a0, f.a1, f.a2); }
int64_t linux_gettimeofday(const SyscallFrame& f) {
  const uint64_t ns = realtime_ns();
  const uint64_t tv[2] = {ns / 1000000000ull, ns % 1000000000ull / 1000};
  return f.a0 ? put_user(f.a0, tv) : 0;
}
int64_t linux_getrlimit(const SyscallFrame& f) { return sys_prlimit(f.a0, 0, f.a1); }
// Identity: root.
int64_t linux_getuid(const SyscallFrame&) { return 0; }
int64_t linux_getgid(const SyscallFrame&) { return 0; }
int64_t linux_geteuid(const SyscallFrame&) { return 0; }
int64_t linux_getegid(const SyscallFrame&) { return 0; }
int64_t linux_getppid(const SyscallFrame&) { return 0; }
int64_t linux_arch_prctl(const SyscallFrame& f) { return sys_arch_prctl(f.a0, f.a1); }
int64_t linux_gettid(const SyscallFrame&) { return sched_current_tid(); }
int64_t linux_tkill(const SyscallFrame& f) { return send_signal(f.a1); }
int64_t linux_time(const SyscallFrame& f) {
  const uint64_t s = realtime_ns() / 1000000000ull;
  const int64_t r = f.a0 ? put_user(f.a0, s) : 0;
  return r == 0 ? int64_t(s) : r;
}
int64_t linux_futex(const SyscallFrame& f) { return sched_futex(f.a0, f.a1, f.a2, f.a3, f.a5); }
int64_t linux_sched_getaffinity(const SyscallFrame& f) {  // one CPU
  const int64_t r = f.a1 < 8 ? -EINVAL : put_user(f.a2, uint64_t(1));
  return r == 0 ? 8 : r;
}
int64_t linux_set_tid_address(const SyscallFrame&) { return sched_current_tid(); }
int64_t linux_clock_gettime(const SyscallFrame& f) { return sys_clock_gettime(f.a0, f.a1); }
int64_t linux_clock_getres(const SyscallFrame& f) {  // 1 ns
  const uint64_t res[2] = {0, 1};
  return f.a1 ? put_user(f.a1, res) : 0;
}
int64_t linux_clock_nanosleep(const SyscallFrame& f) { return sys_nanosleep(f.a2); }  // relative only
[[noreturn]] int64_t linux_exit_group(const SyscallFrame& f) {
  app_report_code_pages();
  machine_exit(int(f.a0 & 0xFF));
}
int64_t linux_tgkill(const SyscallFrame& f) { return send_signal(f.a2); }
int64_t linux_openat(const SyscallFrame& f) { return sys_openat(f.a1, f.a2); }
int64_t linux_newfstatat(const SyscallFrame& f) { return sys_newfstatat(int64_t(f.a0), f.a1, f.a2, f.a3); }
int64_t linux_readlinkat(const SyscallFrame& f) { return sys_readlink(f.a1, f.a2, f.a3); }
int64_t linux_faccessat(const SyscallFrame& f) { return sys_access(f.a1, f.a2); }
int64_t linux_mkdirat(const SyscallFrame& f) { return sys_mkdir(f.a1); }
int64_t linux_set_robust_list(const SyscallFrame&) { return 0; }
int64_t linux_prlimit64(const SyscallFrame& f) { return sys_prlimit(f.a1, f.a2, f.a3); }
int64_t linux_getrandom(const SyscallFrame& f) { return sys_getrandom(f.a0, f.a1); }
int64_t linux_rseq(const SyscallFrame&) { return -ENOSYS; }  // silently: glibc copes without it
int64_t linux_clone3(const SyscallFrame& f) { return sched_clone3(g_syscall_trap_frame, f.a0, f.a1); }
int64_t linux_faccessat2(const SyscallFrame& f) { return sys_access(f.a1, f.a2); }

// ---- dispatch -------------------------------------------------------------------------------------

const char* syscall_name(uint64_t nr) {
  switch (nr) {
#define BF_SYSCALL(nr, name) \
  case nr: return #name;
#define BF_SYSCALL_ENOSYS(nr, name) BF_SYSCALL(nr, name)
#include "kernel/syscall/syscalls.def"
#undef BF_SYSCALL
#undef BF_SYSCALL_ENOSYS
    default: return "unknown";
  }
}

int64_t not_implemented(uint64_t nr) {
  klog("syscall %lu (%s) is not implemented: -ENOSYS", nr, syscall_name(nr));
  return -ENOSYS;
}

int64_t run_syscall(const SyscallFrame& f) {
  switch (f.nr) {
#define BF_SYSCALL(nr, name) \
  case nr: return linux_##name(f);
#define BF_SYSCALL_ENOSYS(nr, name)
#include "kernel/syscall/syscalls.def"
#undef BF_SYSCALL
#undef BF_SYSCALL_ENOSYS
    default: return not_implemented(f.nr);
  }
}

}  // namespace

TrapFrame* g_syscall_trap_frame = nullptr;

void syscall_set_trace(bool on) { g_trace = on; }

}  // namespace bf::kern

using namespace bf::kern;

extern "C" int64_t syscall_dispatch(SyscallFrame* f) {
  const int64_t r = run_syscall(*f);
  if (g_trace) klog("strace: [%d] %s(0x%lx, 0x%lx, 0x%lx) = %ld", sched_current_tid(), syscall_name(f->nr), f->a0, f->a1, f->a2, r);
  return r;
}
