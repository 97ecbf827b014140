/* A static program run inside the unikernel by the boot tests. argv[1] picks the scenario. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int fail(const char* what) {
  fprintf(stderr, "guest_test: FAIL %s (errno %d)\n", what, errno);
  return 1;
}

/* Threads: a condvar handshake, floating-point work in every thread (vector state must survive
   switches), a thread that busy-waits (needs preemption), and joins. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_ready = 0;
static atomic_int g_flag = 0;

static void* worker(void* arg) {
  long id = (long)arg;
  pthread_mutex_lock(&g_mu);
  while (!g_ready) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  double x = 0;
  for (int i = 1; i <= 2000000; ++i) x += (double)(id + 1) / i;
  return (void*)(long)(x * 1000);
}

static void* spinner(void* arg) {
  (void)arg;
  while (!atomic_load(&g_flag)) {
  }
  return (void*)7;
}

static int threads_test(void) {
  pthread_t t[3], s;
  for (long i = 0; i < 3; ++i)
    if (pthread_create(&t[i], NULL, worker, (void*)i) != 0) return fail("pthread_create");
  if (pthread_create(&s, NULL, spinner, NULL) != 0) return fail("pthread_create spinner");
  double y = 0;
  for (int i = 1; i <= 2000000; ++i) y += 0.5 / i;
  struct timespec d = {0, 20 * 1000 * 1000};
  nanosleep(&d, NULL);
  atomic_store(&g_flag, 1);
  pthread_mutex_lock(&g_mu);
  g_ready = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  long sum = 0;
  for (int i = 0; i < 3; ++i) {
    void* r;
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  void* sr;
  pthread_join(s, &sr);
  printf("threads: sum=%ld main=%ld spinner=%ld\n", sum, (long)(y * 1000), (long)sr);
  return 0;
}

/* Boot tests of argument passing (bareflow boot): "argv ARGS..." writes each of ARGS followed by a
   NUL, so the test compares the exact bytes the guest got; "sleep SEC" keeps the machine running
   (signal tests). */
static int argv_modes(int argc, char** argv) {
  if (!strcmp(argv[1], "sleep")) {
    struct timespec d = {argc > 2 ? atoi(argv[2]) : 60, 0};
    printf("sleeping\n");
    fflush(stdout);
    nanosleep(&d, NULL);
    return 0;
  }
  for (int i = 2; i < argc; ++i) fwrite(argv[i], 1, strlen(argv[i]) + 1, stdout);
  return 0;
}

/* Row 10 of [harden]: replacing part of a 2 MiB-backed anonymous mapping (MAP_FIXED of a file, of
   a private writable file copy, of anonymous memory; munmap; mprotect) must change exactly the
   pages asked for, as on Linux. The kernel maps the 8 MiB with 2 MiB pages, so each replacement
   splits a large page; a kernel that drops more than the range makes the pattern check fault
   (exit 139) or fail. */
#define MF_LEN (8ul << 20)
#define MF_PAGE 4096ul
static unsigned long mf_word(unsigned long i) { return (i * 0x9e3779b97f4a7c15ul) ^ 0x5a5a5a5a5a5a5a5aul; }

/* Offsets (from the base) of the replaced ranges, each inside a 2 MiB page, not at its start. */
#define MF_FILE_OFF ((2ul << 20) + 3 * MF_PAGE)      /* read-only file, 2 pages */
#define MF_COPY_OFF ((3ul << 20) + 5 * MF_PAGE)      /* private writable file copy, 1 page */
#define MF_ANON_OFF ((4ul << 20) + 7 * MF_PAGE)      /* anonymous, 3 pages */
#define MF_UNMAP_OFF ((5ul << 20) + 9 * MF_PAGE)     /* munmap, 1 page */
#define MF_PROT_OFF ((6ul << 20) + 11 * MF_PAGE)     /* mprotect PROT_READ, 2 pages */

static int mf_in(unsigned long off, unsigned long start, unsigned long pages) {
  return off >= start && off < start + pages * MF_PAGE;
}

static int mapfixed_test(const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail("open");
  static unsigned char file[2 * MF_PAGE];
  if (read(fd, file, sizeof file) != (ssize_t)sizeof file) return fail("read 2 pages of the file");
  unsigned char* base = mmap(NULL, MF_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return fail("mmap 8 MiB");
  unsigned long* w = (unsigned long*)base;
  const unsigned long words = MF_LEN / sizeof(unsigned long);
  for (unsigned long i = 0; i < words; ++i) w[i] = mf_word(i);

  unsigned char* p = mmap(base + MF_FILE_OFF, 2 * MF_PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p != base + MF_FILE_OFF) return fail("MAP_FIXED file");
  p = mmap(base + MF_COPY_OFF, MF_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, MF_PAGE);
  if (p != base + MF_COPY_OFF) return fail("MAP_FIXED writable file copy");
  p = mmap(base + MF_ANON_OFF, 3 * MF_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p != base + MF_ANON_OFF) return fail("MAP_FIXED anonymous");
  if (munmap(base + MF_UNMAP_OFF, MF_PAGE) != 0) return fail("munmap 1 page");
  if (mprotect(base + MF_PROT_OFF, 2 * MF_PAGE, PROT_READ) != 0) return fail("mprotect 2 pages");

  /* Every other word still holds the pattern (and the neighbours of the read-only pages are still
     writable); the replaced ranges hold what replaced them. */
  unsigned long bad = 0;
  for (unsigned long i = 0; i < words; ++i) {
    const unsigned long off = i * sizeof(unsigned long);
    if (mf_in(off, MF_UNMAP_OFF, 1)) continue;
    const unsigned char* b = base + off;
    unsigned long want;
    if (mf_in(off, MF_FILE_OFF, 2)) memcpy(&want, file + (off - MF_FILE_OFF), sizeof want);
    else if (mf_in(off, MF_COPY_OFF, 1)) memcpy(&want, file + MF_PAGE + (off - MF_COPY_OFF), sizeof want);
    else if (mf_in(off, MF_ANON_OFF, 3)) want = 0;
    else want = mf_word(i);
    unsigned long got;
    memcpy(&got, b, sizeof got);
    if (got != want && bad++ < 4) fprintf(stderr, "mapfixed: word at +0x%lx is %lx, want %lx\n", off, got, want);
    if (!mf_in(off, MF_PROT_OFF, 2) && !mf_in(off, MF_FILE_OFF, 2)) w[i] = got;  /* still writable */
  }
  /* The unmapped page and the read-only pages, as the kernel sees them: writing through them is
     EFAULT (raw system call: no vDSO on Linux either), their neighbours are fine. */
  struct timespec* t;
  long r1 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, base + MF_UNMAP_OFF);
  int e1 = errno;
  long r2 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, base + MF_PROT_OFF + MF_PAGE);
  int e2 = errno;
  long r3 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, base + MF_FILE_OFF);
  int e3 = errno;
  t = (struct timespec*)(base + MF_UNMAP_OFF - 64);
  long r4 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, t);
  t = (struct timespec*)(base + MF_PROT_OFF + 2 * MF_PAGE);
  long r5 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, t);
  /* A mapping placed by the kernel never lands on one placed with MAP_FIXED: fix one just past
     where the kernel would put the next one, then ask for a placed one. */
  unsigned char* probe = mmap(NULL, MF_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) return fail("mmap probe");
  unsigned char* fixed = (unsigned char*)(((unsigned long)probe + MF_PAGE + (2ul << 20) - 1) & ~((2ul << 20) - 1));
  if (mmap(fixed, MF_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != fixed)
    return fail("MAP_FIXED_NOREPLACE past the probe");
  memset(fixed, 0x5c, MF_PAGE);
  unsigned char* placed = mmap(NULL, 4ul << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (placed == MAP_FAILED) return fail("mmap 4 MiB");
  memset(placed, 0x3a, 4ul << 20);
  const int apart = (placed + (4ul << 20) <= fixed || placed >= fixed + MF_PAGE) && fixed[0] == 0x5c &&
                    fixed[MF_PAGE - 1] == 0x5c;
  if (!apart) fprintf(stderr, "mapfixed: placed mapping %p overlaps the fixed page %p\n", (void*)placed, (void*)fixed);
  const int ok = apart && bad == 0 && r1 == -1 && e1 == EFAULT && r2 == -1 && e2 == EFAULT && r3 == -1 && e3 == EFAULT &&
                 r4 == 0 && r5 == 0;
  printf("mapfixed: bad=%lu unmapped=%ld/%d readonly=%ld/%d file=%ld/%d neighbours=%ld/%ld apart=%d ok=%d\n", bad,
         r1, e1, r2, e2, r3, e3, r4, r5, apart, ok);
  return ok ? 0 : 1;
}

/* What a system call costs here (not a test: a measurement, kernel/README.md "KVM on these
   machines"): getpid, and a write of 2 and of 32 bytes to stdout, 2000 of each. */
static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int syscall_cost(void) {
  const int n = 2000;
  const double t0 = now_s();
  for (int i = 0; i < n; i++) syscall(SYS_getpid);
  const double t1 = now_s();
  for (int i = 0; i < n; i++)
    if (write(1, "ab", 2) != 2) return fail("write 2");
  const double t2 = now_s();
  for (int i = 0; i < n; i++)
    if (write(1, "abcdefghijklmnopqrstuvwxyz012345", 32) != 32) return fail("write 32");
  const double t3 = now_s();
  fprintf(stderr, "\nsyscall-cost: getpid %.2f us, write(2 B) %.2f us, write(32 B) %.2f us\n", (t1 - t0) / n * 1e6,
          (t2 - t1) / n * 1e6, (t3 - t2) / n * 1e6);
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "hello";
  if (!strcmp(mode, "argv") || !strcmp(mode, "sleep")) return argv_modes(argc, argv);
  if (!strcmp(mode, "hello")) {
    printf("hello from ring 3: argc=%d", argc);
    for (int i = 0; i < argc; ++i) printf(" [%s]", argv[i]);
    printf("\n");
    fprintf(stderr, "this line goes to stderr\n");
    return 0;
  }
  if (!strcmp(mode, "syscall-cost")) return syscall_cost();
  if (!strcmp(mode, "exit")) return argc > 2 ? atoi(argv[2]) : 0;
  if (!strcmp(mode, "enosys")) {
    long r = syscall(SYS_pkey_alloc, 0, 0);
    int e = errno;
    long r2 = syscall(999);
    int e2 = errno;
    printf("pkey_alloc=%ld errno=%d; 999=%ld errno=%d\n", r, e, r2, e2);
    return (r == -1 && e == ENOSYS && r2 == -1 && e2 == ENOSYS) ? 0 : 1;
  }
  if (!strcmp(mode, "null")) {
    volatile int* p = (volatile int*)0;
    printf("about to dereference null\n");
    fflush(stdout);
    return *p;
  }
  /* Ring-3 exceptions: each must end the program with Linux's signal (boot test "traps"). */
  if (!strcmp(mode, "int3")) {
    printf("about to int3\n");
    fflush(stdout);
    __asm__ volatile("int3");
    return 0;
  }
  if (!strcmp(mode, "ud2")) {
    printf("about to ud2\n");
    fflush(stdout);
    __asm__ volatile("ud2");
    return 0;
  }
  if (!strcmp(mode, "div0")) {
    unsigned a = 1, d = 0, z = 0;
    printf("about to divide by zero\n");
    fflush(stdout);
    /* In asm: the compiler may turn 1 / z into a compare with no divide. */
    __asm__ volatile("divl %2" : "+a"(a), "+d"(d) : "r"(z));
    return (int)a;
  }
  if (!strcmp(mode, "efault")) {
    /* Bad pointers must come back as EFAULT, never crash the kernel. */
    long r1 = syscall(SYS_write, 1, (void*)8, 10);
    int e1 = errno;
    long r2 = syscall(SYS_write, 1, (void*)0xffff800000000000ul, 10);
    int e2 = errno;
    long r3 = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void*)main); /* read-only text */
    int e3 = errno;
    long r4 = syscall(SYS_openat, AT_FDCWD, (void*)0x1000, O_RDONLY);
    int e4 = errno;
    printf("efault: %ld/%d %ld/%d %ld/%d %ld/%d\n", r1, e1, r2, e2, r3, e3, r4, e4);
    return (r1 == -1 && e1 == EFAULT && r2 == -1 && e2 == EFAULT && r3 == -1 && e3 == EFAULT && r4 == -1 &&
            e4 == EFAULT)
               ? 0
               : 1;
  }
  if (!strcmp(mode, "file")) {
    /* Read a boot module with read() and with a zero-copy mmap; print both checksums. */
    if (argc < 3) return fail("usage: file PATH");
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail("open");
    struct stat st;
    if (fstat(fd, &st) != 0) return fail("fstat");
    unsigned long s1 = 0, s2 = 0;
    unsigned char buf[4096];
    ssize_t n;
    long total = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
      for (ssize_t i = 0; i < n; ++i) s1 = s1 * 31 + buf[i];
      total += n;
    }
    const unsigned char* m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return fail("mmap");
    for (long i = 0; i < st.st_size; ++i) s2 = s2 * 31 + m[i];
    printf("size=%ld read=%ld sum_read=%lx sum_mmap=%lx\n", (long)st.st_size, total, s1, s2);
    void* big = malloc(64 << 20);
    if (!big) return fail("malloc 64 MiB");
    memset(big, 1, 64 << 20);
    free(big);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (b.tv_sec < a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec < a.tv_nsec)) return fail("clock");
    char exe[64] = {0};
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) <= 0) return fail("readlink");
    /* A read-only file system: a new folder is EROFS, an existing name EEXIST (no log line). */
    if (mkdir("/repacked", 0755) == 0 || errno != EROFS) return fail("mkdir of a new folder is not EROFS");
    if (mkdir(argv[2], 0755) == 0 || errno != EEXIST) return fail("mkdir of a boot file is not EEXIST");
    if (mkdirat(AT_FDCWD, "/", 0755) == 0 || errno != EEXIST) return fail("mkdirat of / is not EEXIST");
    printf("exe=%s ok=%d\n", exe, s1 == s2 && total == st.st_size);
    return s1 == s2 && total == st.st_size ? 0 : 1;
  }
  if (!strcmp(mode, "threads")) return threads_test();
  if (!strcmp(mode, "mapfixed")) return argc > 2 ? mapfixed_test(argv[2]) : fail("usage: mapfixed PATH");
  if (!strcmp(mode, "cpu")) {
    /* What ring 3 sees: CPUID.7.EBX (AVX2 bit 5, AVX-512F bit 16), CPUID.1.ECX (OSXSAVE bit 27), XCR0. */
    unsigned a, b, c, d, lo, hi;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    unsigned b7 = b;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    unsigned c1 = c;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xd), "c"(0));
    unsigned d0 = a;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    printf("cpuid7.ebx=%08x cpuid1.ecx=%08x cpuid0d.eax=%08x xcr0=%08x avx2=%d avx512f=%d\n", b7, c1, d0, lo,
           !!(b7 & 32), !!(b7 & 65536));
    return 0;
  }
  fprintf(stderr, "guest_test: unknown mode %s\n", mode);
  return 2;
}
