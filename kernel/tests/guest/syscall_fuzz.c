/* A system-call fuzzer for the unikernel: issues COUNT seeded random system calls (random numbers,
   known and unknown, and random arguments: bad pointers of every kind, huge lengths, random flags)
   and prints one summary line. The kernel must never panic or hang, and every call must return:
   the program reaching its summary and exiting 0 is the test.

     syscall_fuzz SEED COUNT [FILE]    (FILE: a boot module, opened as a valid fd)

   It runs only inside the unikernel (uname release "...-bareflow"): on a real Linux host random
   system calls with valid paths and fds could do real damage.

   What the program protects so that only the kernel can fail (never the fuzzer itself):
   - lengths and flags are also passed where a call takes a pointer, and some of them (2 MiB
     multiples, powers of two, 32-bit values) land in the program's own image, TLS and brk heap
     (0x400000 up); so every argument that an implemented call writes through (kWrites) is
     replaced by a bad pointer when it falls in the image..brk or the stack (seed 13 once had
     read() overwrite the TLS this way);
   - valid pointers handed to the kernel point into buf (1 MiB between two PROT_NONE guards, so a
     length running past it is EFAULT, not a write into the program's data), the read-only page,
     the program text (read-only), or the scratch window; never into the stack, .data, .bss or the
     heap;
   - mmap(MAP_FIXED / MAP_FIXED_NOREPLACE), munmap, mprotect, madvise and mremap only touch the
     scratch window (or addresses the kernel must refuse, or mappings this program made);
   - brk never moves below where it was at start-up (glibc's stdout buffer lives below);
   - fds 0, 1, 2 are never closed and nothing long is written to them (serial output is slow and
     stdout must carry only the summary). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define PAGE 4096ul
#define BUF_LEN (1ul << 20)
#define GUARD_LEN (64ul << 10)
#define WIN_LEN (32ul << 20) /* scratch window for address-space calls */
#define FAR_WIN (0x10000000000ul + (256ul << 20)) /* a second one, unmapped at first (1 TiB + 256 MiB) */
#define MAX_RECORDS 32      /* non-fixed mappings this program made, unmapped oldest first */
#define MAX_NR 1200         /* numbers drawn mostly below this; also fully random 64-bit ones */
#define MAX_COUNT 100000000ul

static uint64_t g_rng;
static uint64_t rnd(void) { /* splitmix64: every seed gives a different, reproducible run */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

static unsigned char* g_buf;     /* BUF_LEN, read-write, guards on both sides */
static unsigned char* g_guard;   /* the PROT_NONE guard before buf */
static unsigned char* g_ro;      /* one read-only page of strings */
static unsigned char* g_win;     /* WIN_LEN scratch window */
static uint64_t g_brk_floor;     /* brk at start-up, after stdio's buffer exists */
static int g_file_fd = -1;
static struct { uint64_t addr, len; } g_rec[MAX_RECORDS];
static unsigned g_nrec, g_rec_next;
extern char end[]; /* end of .bss: brk values below it cannot be glibc's heap */

/* System calls never issued, and why: each would end the program, block it forever, or hand
   control to random code, which says nothing about the kernel. */
static const struct { long nr; const char* why; } kDeny[] = {
    {15, "rt_sigreturn: loads a register frame from the stack and jumps to it"},
    {34, "pause: blocks until a signal, and none is ever delivered"},
    {35, "nanosleep: busy-waits for a random duration (years)"},
    {230, "clock_nanosleep: the same"},
    {56, "clone: a new thread on a random stack and TLS crashes the program"},
    {435, "clone3: the same"},
    {57, "fork: on Linux a copy of the fuzzer"},
    {58, "vfork: the same, sharing the stack"},
    {59, "execve: replaces the program"},
    {322, "execveat: the same"},
    {60, "exit: ends the thread (the only one: the program)"},
    {231, "exit_group: ends the program"},
    {62, "kill: a signal ends the program with 128 + signal"},
    {200, "tkill: the same"},
    {234, "tgkill: the same"},
    {61, "wait4: would block on Linux with children"},
    {247, "waitid: the same"},
    {130, "rt_sigsuspend: blocks until a signal"},
    {128, "rt_sigtimedwait: blocks for a random time"},
    {7, "poll: may block for a random timeout on stdin"},
    {23, "select: the same"},
    {270, "pselect6: the same"},
    {271, "ppoll: the same"},
    {232, "epoll_wait: the same"},
    {281, "epoll_pwait: the same"},
    {441, "epoll_pwait2: the same"},
    {169, "reboot: ends the machine on Linux"},
};
static int denied(uint64_t nr) {
  for (unsigned i = 0; i < sizeof kDeny / sizeof kDeny[0]; ++i)
    if ((uint64_t)kDeny[i].nr == nr) return 1;
  return 0;
}

/* The numbers the unikernel implements (syscall/syscall.cpp), drawn more often than the rest. */
static const uint16_t kKnown[] = {0,  1,  2,   3,   4,   5,   6,   8,   9,   10,  11,  12,  13,  14,  16,  17,
                                  19, 20, 21,  24,  25,  28,  39,  186, 110, 102, 104, 107, 108, 63,  72,  79,
                                  89, 96, 97,  158, 201, 202, 204, 218, 228, 229, 257, 262, 267, 269, 439, 273,
                                  302, 318, 334, 131, 18, 33, 292, 32, 90, 91, 92, 93, 94, 95};

static uint64_t gen_nr(void) {
  for (int tries = 0; tries < 64; ++tries) {
    const uint64_t k = below(100);
    uint64_t nr;
    if (k < 45) nr = kKnown[below(sizeof kKnown / sizeof kKnown[0])];
    else if (k < 85) nr = below(470);
    else if (k < 95) nr = 470 + below(MAX_NR - 470);
    else nr = rnd(); /* unknown, with high bits: must be ENOSYS, not truncated to a known one */
    if (!denied(nr)) return nr;
  }
  return 39; /* getpid: 64 denied draws in a row is astronomically unlikely */
}

/* A pointer of one of the kinds the kernel must tell apart. Classes 0-6 are never accessible to
   ring 3; 7-9 readable, not writable; 10-12 ours to scribble on. */
static uint64_t gen_bad_ptr(void) {
  switch (below(7)) {
    case 0: return 0;
    case 1: return 1 + below(PAGE - 1);                               /* null page */
    case 2: return 0x100000 + below(1ul << 20);                       /* kernel image (supervisor) */
    case 3: return 0xffff800000000000ull + below(1ull << 32);         /* direct map */
    case 4: return 0x0000800000000000ull + below(0xffff000000000000ull); /* non-canonical (mostly) */
    case 5: return 0x600000000000ull + below(1ull << 40);             /* unmapped user memory */
    default: return (uint64_t)g_guard + below(GUARD_LEN);             /* PROT_NONE: supervisor-only */
  }
}
static uint64_t gen_ptr(void) {
  const uint64_t k = below(20);
  if (k < 6) return gen_bad_ptr();
  switch (k) {
    case 6: return (uint64_t)g_ro + below(PAGE);
    case 7: return (uint64_t)&gen_ptr + below(256);                   /* text: read-only */
    case 8: return (uint64_t)g_buf + BUF_LEN - below(64);             /* straddles the guard after */
    case 9: return (uint64_t)g_win + below(WIN_LEN);                  /* mapped or not, by history */
    case 10: return rnd();
    default: return (uint64_t)g_buf + (below(4) ? below(256) : below(BUF_LEN));
  }
}
static uint64_t gen_len(void) {
  switch (below(12)) {
    case 0: return 0;
    case 1: return 1 + below(16);
    case 2: return below(256);
    case 3: return below(PAGE * 2);
    case 4: return PAGE * below(64);
    case 5: return below(BUF_LEN + PAGE);
    case 6: return (uint64_t)1 << below(64);
    case 7: return ~0ull - below(PAGE);
    case 8: return 0x7fffffffull + below(3);
    case 9: return (2ul << 20) * (1 + below(8));
    case 10: return rnd();
    default: return below(64);
  }
}
static uint64_t gen_fd(void) {
  switch (below(8)) {
    case 0: return below(3);
    case 1: return g_file_fd >= 0 ? (uint64_t)g_file_fd : 3;
    case 2: return 3 + below(16);
    case 3: return (uint64_t)-1;
    case 4: return (uint64_t)-100; /* AT_FDCWD */
    case 5: return 1ull << 31;
    case 6: return rnd();
    default: return 3 + below(4);
  }
}
static uint64_t gen_flags(void) {
  switch (below(5)) {
    case 0: return 0;
    case 1: return below(16);
    case 2: return 1ull << below(64);
    case 3: return rnd() & 0xffffffffull;
    default: return rnd();
  }
}
static uint64_t gen_arg(void) {
  switch (below(5)) {
    case 0: return gen_ptr();
    case 1: return gen_len();
    case 2: return gen_fd();
    case 3: return gen_flags();
    default: return below(8);
  }
}

/* Before each call the first bytes of buf hold fresh structures for the kernel to read: paths
   (some unterminated up to the guard), iovec-like (pointer, length) pairs, timespecs. Refreshed so
   that nothing a previous call wrote (a valid TLS pointer from arch_prctl GET_FS, say) is fed back
   as a pointer. */
static void fill_buf(void) {
  static const char* const kPaths[] = {"/", "/proc/self/exe", "/kernel_guest_test", "/kernel_syscall_fuzz", ".", "",
                                       "/nonexistent", "./kernel_syscall_fuzz", "kernel_syscall_fuzz", "/dev/null", "//"};
  uint64_t* w = (uint64_t*)g_buf;
  switch (below(4)) {
    case 0: { /* a path at the start of buf */
      const char* p = kPaths[below(sizeof kPaths / sizeof kPaths[0])];
      const size_t n = strlen(p);
      memcpy(g_buf, p, n + 1);
      break;
    }
    case 1: /* iovecs */
      for (unsigned i = 0; i < 32; i += 2) w[i] = gen_ptr(), w[i + 1] = gen_len();
      break;
    case 2: /* timespecs / small numbers */
      for (unsigned i = 0; i < 32; ++i) w[i] = below(4) ? below(1000) : rnd();
      break;
    default:
      for (unsigned i = 0; i < 32; ++i) w[i] = rnd();
  }
  /* The last 4 KiB before the guard: never a NUL, so a string there runs into the guard. */
  memset(g_buf + BUF_LEN - PAGE, 'A', PAGE);
}

/* A range the address-space calls may change: inside the window (page-aligned or not), one of our
   recorded mappings, or one the kernel must refuse. *len is bounded so it cannot reach past. */
static uint64_t gen_vm_range(uint64_t* len, int* record) {
  *record = -1;
  const uint64_t k = below(10);
  if (k < 7) {
    /* One time in seven the far window instead: nothing is mapped there at first, and the
       kernel's cursor for placed mappings (from 1 TiB up) reaches it after ~200 MiB of them, so
       placed mappings must learn to skip what MAP_FIXED put there. */
    const uint64_t base = k == 6 ? FAR_WIN : (uint64_t)g_win;
    uint64_t off = below(WIN_LEN);
    if (below(4)) off &= ~(PAGE - 1);
    if (below(3) == 0) off &= ~((2ul << 20) - 1);
    uint64_t l = below(3) ? below(WIN_LEN - off + 1) : PAGE * below(8);
    if (below(3) == 0) l = (l + PAGE - 1) & ~(PAGE - 1);
    *len = l > WIN_LEN - off ? WIN_LEN - off : l;
    return base + off;
  }
  if (k < 9 && g_nrec) {
    const unsigned i = (unsigned)below(g_nrec);
    *record = (int)i;
    *len = g_rec[i].len;
    return g_rec[i].addr;
  }
  /* Refused by the kernel: below 2 MiB (the kernel image), the kernel half, non-canonical. */
  switch (below(3)) {
    case 0: {
      const uint64_t a = below(2ul << 20) & ~(PAGE - 1);
      *len = below((2ul << 20) - a + 1);
      return a;
    }
    case 1: *len = gen_len(); return 0xffff800000000000ull + (below(1ull << 32) & ~(PAGE - 1));
    default: *len = gen_len(); return 0x0000800000000000ull + (below(1ull << 46) & ~(PAGE - 1));
  }
}

static void record(uint64_t addr, uint64_t len) {
  if (addr >= (uint64_t)g_win && addr < (uint64_t)g_win + WIN_LEN) return; /* the windows' own */
  if (addr >= FAR_WIN && addr < FAR_WIN + WIN_LEN) return;
  if (g_nrec == MAX_RECORDS) { /* make room: unmap the oldest (keeps memory in use bounded) */
    const unsigned i = g_rec_next++ % MAX_RECORDS;
    syscall(SYS_munmap, g_rec[i].addr, g_rec[i].len);
    g_rec[i].addr = addr, g_rec[i].len = len;
    return;
  }
  g_rec[g_nrec].addr = addr, g_rec[g_nrec].len = len;
  ++g_nrec;
}
static void forget(int i) {
  if (i < 0) return;
  g_rec[i] = g_rec[--g_nrec];
}

/* Which arguments each implemented call writes through (bit i = argument i), from
   syscall/syscall.cpp; readv's iovec array counts, since its contents become write pointers. */
static const struct { uint16_t nr, mask; } kWrites[] = {
    {0, 2},    {17, 2},   {19, 2},  {4, 2},   {6, 2},   {5, 2},   {13, 4},   {14, 4},   {131, 2}, {63, 1},
    {79, 1},   {89, 2},   {267, 4}, {96, 3},  {97, 2},  {302, 8}, {158, 2},  {201, 1},  {204, 4}, {228, 2},
    {229, 2},  {262, 4},  {318, 1}, {202, 9}, {218, 1}, {273, 1}, {72, 4},   {16, 4},   {295, 2},
};
#define BRK_MAX (64ul << 20) /* brk is never moved more than this above where it started */
extern char __executable_start[];
static uint64_t g_stack_lo, g_stack_hi;
static int own_memory(uint64_t p) {
  return (p >= (uint64_t)__executable_start && p < g_brk_floor + BRK_MAX + (2ul << 20)) ||
         (p >= g_stack_lo && p < g_stack_hi);
}
static void keep_off_own_memory(uint64_t nr, uint64_t a[6]) {
  for (unsigned i = 0; i < sizeof kWrites / sizeof kWrites[0]; ++i) {
    if (kWrites[i].nr != nr) continue;
    for (int j = 0; j < 6; ++j)
      if ((kWrites[i].mask >> j & 1) && own_memory(a[j])) a[j] = gen_bad_ptr();
  }
}

/* Turns random arguments into ones that cannot hurt the program itself (see the header). Returns
   the index of the recorded mapping the call may remove, or -1. */
static int sanitize(uint64_t nr, uint64_t a[6]) {
  int rec = -1;
  switch (nr) {
    case 1:  /* write: fds 1/2 get at most 64 bytes, to stderr only */
    case 18: /* pwrite64 */
      if (a[0] == 1 || a[0] == 2) a[0] = 2, a[2] &= 63;
      break;
    case 20:  /* writev: the iovec lengths are random: never to the console */
    case 296: /* pwritev */
    case 328: /* pwritev2 */
    case 40:  /* sendfile (out fd) */
      if (a[0] <= 2) a[0] = 3 + below(8);
      break;
    case 3: /* close: keep the console */
      if (a[0] <= 2) a[0] = 3 + below(8);
      break;
    case 33:  /* dup2: never over the console */
    case 292: /* dup3 */
      if (a[1] <= 2) a[1] = 3 + below(8);
      break;
    case 9: { /* mmap: fixed addresses only inside the window */
      if (a[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        uint64_t len;
        a[0] = gen_vm_range(&len, &rec);
        a[1] = len;
        rec = -1; /* mapping over a record keeps it a record of something mapped */
        if (a[0] < (uint64_t)g_win || a[0] >= (uint64_t)g_win + WIN_LEN) a[1] = len ? len : PAGE;
        if (a[0] >= FAR_WIN && a[0] < FAR_WIN + WIN_LEN) a[1] = len;
      }
      if (below(2)) a[3] = (a[3] & ~0xfful) | (below(2) ? MAP_PRIVATE : MAP_SHARED) | (below(2) ? MAP_ANONYMOUS : 0);
      if (below(2)) a[4] = g_file_fd;
      if (below(2)) a[2] &= 7;
      if (below(2)) a[5] &= 0xff000;
      break;
    }
    case 10: /* mprotect */
    case 11: /* munmap */
    case 28: /* madvise: MADV_DONTNEED zeroes */
      a[0] = gen_vm_range(&a[1], &rec);
      if (nr == 10 && below(2)) a[2] &= 7;
      if (nr == 28 && below(2)) a[2] = below(2) ? 4 /* MADV_DONTNEED */ : below(30);
      if (nr != 11) rec = -1;
      break;
    case 25: /* mremap: old range in the window or ours; MREMAP_FIXED's target in the window */
      a[0] = gen_vm_range(&a[1], &rec);
      if (below(2)) a[2] = below(2) ? PAGE * below(1024) : a[1] / 2;
      if (below(2)) a[3] &= 3;
      {
        uint64_t l;
        int r2;
        a[4] = gen_vm_range(&l, &r2);
      }
      break;
    case 12: /* brk: never below the start-up break (glibc's heap), unless below the image */
      switch (below(4)) {
        case 0: a[0] = 0; break;
        case 1: a[0] = g_brk_floor + below(BRK_MAX); break;
        case 2: a[0] = g_brk_floor; break;
        default: /* refused by the kernel: below the image, or more than 64 GiB above the start */
          a[0] = below(2) ? below((uint64_t)end) : g_brk_floor + (64ull << 30) + 1 + below(1ull << 40);
      }
      break;
    case 158: /* arch_prctl: ARCH_SET_FS would move glibc's TLS (errno, stdio locks) */
      if (a[0] == 0x1002 || below(2)) a[0] = 0x1001 + below(4) * (below(4) ? 1 : 0x100);
      if (a[0] == 0x1002) a[0] = 0x1003;
      break;
    case 202: /* futex: a WAIT whose word holds the value blocks forever (reported as a deadlock) */
      if (below(2)) a[1] = below(14) | (below(2) ? 128 : 0);
      if ((a[1] & 0x7f) != 1 && (a[1] & 0x7f) != 10) a[0] = gen_bad_ptr(); /* only WAKE sees good words */
      break;
    default: break;
  }
  keep_off_own_memory(nr, a);
  return rec;
}

/* errno counts: 0 = success, 1..MAX_ERRNO = -1..-MAX_ERRNO, the last slot = anything else. */
#define MAX_ERRNO 140
static uint64_t g_count[MAX_ERRNO + 2];

int main(int argc, char** argv) {
  struct utsname u;
  if (uname(&u) != 0 || !strstr(u.release, "bareflow")) {
    fprintf(stderr, "syscall_fuzz: runs only inside the bareflow unikernel (release %s)\n", u.release);
    return 2;
  }
  if (argc < 3) {
    fprintf(stderr, "usage: syscall_fuzz SEED COUNT [FILE]\n");
    return 2;
  }
  const uint64_t seed = strtoull(argv[1], NULL, 0), count = strtoull(argv[2], NULL, 0);
  if (count > MAX_COUNT) {
    fprintf(stderr, "syscall_fuzz: COUNT above %lu\n", MAX_COUNT);
    return 2;
  }
  g_rng = seed;
  printf("syscall_fuzz: seed=%lu count=%lu\n", seed, count); /* stdout's buffer exists from here on */
  fflush(stdout);
  if (argc > 3) g_file_fd = open(argv[3], O_RDONLY);

  unsigned char* area = mmap(NULL, BUF_LEN + 2 * GUARD_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return fprintf(stderr, "syscall_fuzz: mmap buf\n"), 1;
  g_guard = area, g_buf = area + GUARD_LEN;
  if (mprotect(g_buf, BUF_LEN, PROT_READ | PROT_WRITE) != 0) return fprintf(stderr, "syscall_fuzz: mprotect\n"), 1;
  g_ro = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_ro == MAP_FAILED) return 1;
  strcpy((char*)g_ro, "/proc/self/exe");
  strcpy((char*)g_ro + 64, "/");
  if (mprotect(g_ro, PAGE, PROT_READ) != 0) return 1;
  g_win = mmap(NULL, WIN_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_win == MAP_FAILED) return 1;
  g_brk_floor = (uint64_t)syscall(SYS_brk, 0);
  {
    /* The 8 MiB stack lies below where main's frame is (plus the arguments above it). */
    const uint64_t sp = (uint64_t)__builtin_frame_address(0);
    g_stack_lo = sp - (9ul << 20), g_stack_hi = sp + (1ul << 20);
  }

  for (uint64_t n = 0; n < count; ++n) {
    const uint64_t nr = gen_nr();
    uint64_t a[6];
    for (int i = 0; i < 6; ++i) a[i] = gen_arg();
    fill_buf();
    const int rec = sanitize(nr, a);
    long r;
    /* Raw syscall instruction: glibc's syscall() would set errno (TLS), nothing else differs. */
    register uint64_t r10 __asm__("r10") = a[3], r8 __asm__("r8") = a[4], r9 __asm__("r9") = a[5];
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if (r < 0 && r >= -MAX_ERRNO) {
      ++g_count[-r];
    } else if (r < 0) { /* not an errno: say which call returned it (the first few) */
      if (g_count[MAX_ERRNO + 1]++ < 4)
        fprintf(stderr, "syscall_fuzz: call %lu: syscall %lu(0x%lx, 0x%lx, 0x%lx) = %ld\n", n, nr, a[0], a[1], a[2], r);
    } else {
      ++g_count[0];
    }
    if (r >= 0 && (nr == 9 || (nr == 25 && (uint64_t)r != a[0]))) record((uint64_t)r, nr == 9 ? a[1] : a[2]);
    if (r == 0 && nr == 11) forget(rec);
  }
  uint64_t errors = 0;
  for (unsigned i = 1; i < MAX_ERRNO + 2; ++i) errors += g_count[i];
  printf("syscall_fuzz: seed=%lu calls=%lu ok=%lu errors=%lu", seed, count, g_count[0], errors);
  for (unsigned i = 1; i <= MAX_ERRNO; ++i)
    if (g_count[i]) printf(" %s=%lu", strerrorname_np((int)i) ? strerrorname_np((int)i) : "?", g_count[i]);
  if (g_count[MAX_ERRNO + 1]) printf(" other=%lu", g_count[MAX_ERRNO + 1]);
  printf("\nsyscall_fuzz: done\n");
  /* A negative result that is no errno is a kernel bug (no call returns such a value: a kernel
     address from mremap once did). A fuzzer whose calls all fail (or all succeed) tests nothing. */
  return g_count[0] + errors == count && g_count[0] > 0 && errors > 0 && !g_count[MAX_ERRNO + 1] ? 0 : 1;
}
