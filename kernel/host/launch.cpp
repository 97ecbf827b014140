#include "kernel/host/launch.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernel/boot/bootinfo.h"
#include "kernel/lib/cmdline.h"

namespace bf::boot {

const char kUsage[] =
    "usage: bareflow boot [--iso] [--kvm|--tcg] [--machine microvm|pc] [--mem SIZE] [--timeout SEC]\n"
    "                     [--strace] [--code-pages] [-v] [--app EXE | --image DIR] [--kernel DIR]\n"
    "                     [--module FILE] [--disk FILE [--disk-size SIZE] [--disk-init] [--virtio modern|legacy]]\n"
    "                     -- ARGS...\n"
    "  boots the BareFlow unikernel under QEMU and runs `bareflow ARGS...` inside it\n"
    "  --iso         boot a GRUB ISO (Multiboot2) instead of qemu -kernel (Multiboot1)\n"
    "  --kvm, --tcg  accelerator (default: KVM when /dev/kvm works, else TCG)\n"
    "  --machine M   QEMU machine for the -kernel form: microvm (default: no BIOS, fastest) or pc\n"
    "  --mem SIZE    guest RAM: a number with K, M or G (no suffix: MiB) (default: 256M + 2 x the\n"
    "                boot modules); refused when below what the modules need\n"
    "  --timeout SEC kill the machine after SEC seconds (default 600): exit status 124\n"
    "  --strace      the kernel logs every system call\n"
    "  --code-pages  map the app's code with 4 KiB pages; at exit the kernel logs how many it used\n"
    "                and how many LLVM / bareflow functions lie on used pages\n"
    "  --app EXE     application executable (default: this bareflow)\n"
    "  --image DIR   boot the appliance image DIR (bareflow export --image): its kernel, its\n"
    "                appliance and baked weights; without ARGS its own arguments (and with --iso\n"
    "                its own ISO)\n"
    "  --kernel DIR  directory holding bareflow-kernel.bin/.elf (default: beside this executable)\n"
    "  --module FILE one more file for the guest, as /NAME (NAME: its base name)\n"
    "  --disk FILE   a virtio-blk disk backed by FILE (created when missing): the guest's /state,\n"
    "                where the engine keeps its store across boots (BAREFLOW_STATE=/state)\n"
    "  --disk-size SIZE  size of a disk created now (default 64M; K, M or G)\n"
    "  --disk-init   zero the disk first (the only way an unknown disk gets reused)\n"
    "  --virtio V    virtio-mmio interface on microvm: modern (default) or legacy\n"
    "  -v            print the QEMU command line\n"
    "  The model and the tokenizer (-m, -z, the first argument of generate or info) become files\n"
    "  of the guest; every other argument reaches it byte for byte.\n";

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr size_t kMaxModules = kern::kMaxModules;

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// ---- the signals that end a boot ----------------------------------------------------------------
// SIGINT, SIGTERM and SIGHUP are forwarded to the child's process group (QEMU, or grub-mkrescue and
// its xorriso) and remembered; the launcher then waits for the child, removes the staging directory
// and returns 128 + signal. The child also gets PR_SET_PDEATHSIG, for when we die by SIGKILL.
volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_child = 0;  // process group of the running child, 0 if none

void on_signal(int sig) {
  if (!g_signal) g_signal = sig;
  if (g_child > 0) kill(-pid_t(g_child), sig);
}

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};

struct SignalGuard {
  struct sigaction old[3], old_pipe;
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa = {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) sigaction(kForwarded[i], &sa, &old[i]);
    // A closed stdout shows up as EPIPE from write (the relay then stops the machine), not as a
    // death that would orphan QEMU and the staging directory.
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
  }
  ~SignalGuard() {
    for (int i = 0; i < 3; ++i) sigaction(kForwarded[i], &old[i], nullptr);
    sigaction(SIGPIPE, &old_pipe, nullptr);
  }
};

// ---- messages ---------------------------------------------------------------------------------
const char* g_prog = "bareflow boot";

// One line on stderr, "PROG: message"; returns 2 (bad input).
int complain(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int complain(const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", g_prog, buf);
  return 2;
}

// ---- files ------------------------------------------------------------------------------------
bool regular_file(const std::string& path, uint64_t* size = nullptr) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (size) *size = uint64_t(st.st_size);
  return true;
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : "";
}

std::string find_kernel_dir(const Options& o) {
  if (!o.kernel_dir.empty()) return o.kernel_dir;
  if (const char* e = getenv("BAREFLOW_KERNEL_DIR")) return e;
  std::string d = self_exe();
  d = d.substr(0, d.rfind('/') == std::string::npos ? 0 : d.rfind('/'));
  for (const std::string& c : {d + "/kernel", d, d + "/../kernel"})
    if (regular_file(c + "/bareflow-kernel.bin")) return c;
  return d + "/kernel";
}

bool write_all(int fd, const char* p, size_t n) {
  while (n) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

bool write_file(const std::string& path, const std::string& bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = write_all(fd, bytes.data(), bytes.size());
  return close(fd) == 0 && ok;
}

bool copy_file(const std::string& from, const std::string& to) {
  const int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return false;
  const int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  bool ok = out >= 0;
  char buf[1 << 16];
  while (ok && !g_signal) {
    const ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = n == 0;
      break;
    }
    ok = write_all(out, buf, size_t(n));
  }
  close(in);
  if (out >= 0 && close(out) != 0) ok = false;
  return ok && !g_signal;
}

// The staging directory, removed with everything in it when the launch ends, whatever the path
// (symlinks are removed, never followed).
struct StagingDir {
  std::string path;
  ~StagingDir() {
    if (path.empty()) return;
    nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
    if (access(path.c_str(), F_OK) == 0) fprintf(stderr, "%s: could not remove %s\n", g_prog, path.c_str());
  }
};

// Bytes of the app's writable and zero-filled segments, which the kernel copies into fresh memory
// (0 when it is not an ELF file: the kernel then refuses it itself, with a clear line).
uint64_t elf_data_bytes(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  Elf64_Ehdr eh;
  uint64_t total = 0;
  if (pread(fd, &eh, sizeof eh, 0) == ssize_t(sizeof eh) && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
      eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) && eh.e_phnum < 256) {
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
      Elf64_Phdr ph;
      if (pread(fd, &ph, sizeof ph, off_t(eh.e_phoff + i * sizeof ph)) != ssize_t(sizeof ph)) break;
      if (ph.p_type == PT_LOAD && ((ph.p_flags & PF_W) || ph.p_memsz != ph.p_filesz) && ph.p_memsz < (1ull << 40))
        total += round_up(ph.p_memsz, 2 * kMiB);
    }
  }
  close(fd);
  return total;
}

// ---- the modules ------------------------------------------------------------------------------
struct Module {
  std::string host;  // path on the host
  std::string name;  // file name in the staging directory and in the guest ("/name")
  uint64_t size = 0;
};

// Guest file names: the basename, restricted to characters that survive QEMU's -initrd syntax,
// GRUB's configuration and the kernel command line, made unique ("2-name").
std::string guest_name(const std::string& host, const std::vector<Module>& mods) {
  std::string n = host.substr(host.rfind('/') == std::string::npos ? 0 : host.rfind('/') + 1);
  for (char& c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (n.empty() || n == "." || n == "..") n = "file";
  std::string u = n;
  for (int i = 2;; ++i) {
    bool clash = u == "argv";  // the argv module's file
    for (const Module& m : mods) clash |= m.name == u;
    if (!clash) return u;
    u = std::to_string(i) + "-" + n;
  }
}

std::string le32(uint32_t v) { return {char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; }

// kernel/lib/cmdline.h: magic, argc, bytes of strings, the NUL-terminated strings.
std::string argv_module(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) s += a + '\0';
  return std::string(kern::kArgvMagic, sizeof kern::kArgvMagic) + le32(uint32_t(argv.size())) +
         le32(uint32_t(s.size())) + s;
}

// What --mem is checked against, the RAM the guest needs before the application allocates
// anything: the kernel's 2 MiB, each module rounded up to 2 MiB (the loaders place them in RAM,
// the kernel maps large pages), the app's data and bss rounded up to 2 MiB (copied into fresh
// memory), and 32 MiB for the 8 MiB stack, page tables and a first heap. What the application
// allocates later (a model's KV cache) is its own business: it gets ENOMEM and says so.
uint64_t needed_ram(const std::vector<Module>& mods, uint64_t app_data) {
  uint64_t n = 2 * kMiB + app_data + 32 * kMiB;
  for (const Module& m : mods) n += round_up(m.size, 2 * kMiB);
  return n;
}

// ---- running programs -------------------------------------------------------------------------
// Starts argv[0] (PATH lookup) in dir with fds 0..n-1 of the child set from `fds` (-1: /dev/null),
// in its own process group, dying with us. Returns the pid or -1.
pid_t spawn(const std::vector<std::string>& argv, const std::string& dir, const std::vector<int>& fds) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);  // no forwarding to a half-made child
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    for (int s : kForwarded) signal(s, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // we are single-threaded: "parent thread" = the launcher
    if (getppid() != parent) _exit(127);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    const int devnull = open("/dev/null", O_RDWR);
    // Move the sources above the targets first so that dup2 never overwrites one still needed.
    std::vector<int> src;
    for (int f : fds) src.push_back(fcntl(f < 0 ? devnull : f, F_DUPFD, 64));
    for (size_t i = 0; i < src.size(); ++i) dup2(src[i], int(i));
    for (int fd = int(src.size()); fd < 1024; ++fd) close(fd);
    if (chdir(dir.c_str()) != 0) _exit(127);
    std::vector<char*> av;
    for (const std::string& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    execvp(av[0], av.data());
    dprintf(2, "cannot run %s: %s\n", av[0], strerror(errno));
    _exit(127);
  }
  if (pid > 0) {
    setpgid(pid, pid);  // also here: the group must exist before we signal it
    g_child = pid;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return pid;
}

// Waits for the child; returns its exit status, or 128 + signal.
int reap(pid_t pid) {
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

struct RunResult {
  int status = -1;           // guest exit status from "[bf] exit N", -1 if none seen
  bool saw_kernel = false;   // the kernel printed anything
  bool wrote_stdout = false;
  bool timed_out = false;
  int qemu_status = 0;
  std::string qemu_err;
};

// Runs QEMU in dir with COM1 -> fd 4 and COM2 -> fd 3 (pipes we read), relaying them: COM2 to
// stdout, COM1 to stderr. A signal (forwarded by on_signal) or a closed stdout stops it; if QEMU
// does not go within 3 s it is killed.
RunResult run_qemu(std::vector<std::string> argv, const std::string& dir, bool microvm, int timeout, bool verbose) {
  RunResult r;
  int out[2], log[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(log, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    complain("pipe: %s", strerror(errno));
    return r;
  }
  if (microvm) {
    // microvm has one ISA serial port of its own; COM2 is added as a device.
    argv.insert(argv.end(), {"-serial", "file:/proc/self/fd/4", "-chardev", "file,id=com2,path=/proc/self/fd/3",
                             "-device", "isa-serial,chardev=com2,iobase=0x2f8,irq=3"});
  } else {
    argv.insert(argv.end(), {"-serial", "file:/proc/self/fd/4", "-serial", "file:/proc/self/fd/3"});
  }
  if (verbose) {
    std::string line = "cd '" + dir + "' &&";
    for (const auto& a : argv) line += " " + (a.find_first_of(" ,\"$") != std::string::npos ? "'" + a + "'" : a);
    fprintf(stderr, "%s: %s\n", g_prog, line.c_str());
  }
  const pid_t pid = spawn(argv, dir, {-1, err[1], err[1], out[1], log[1]});
  close(out[1]), close(log[1]), close(err[1]);
  if (pid < 0) {
    complain("fork: %s", strerror(errno));
    close(out[0]), close(log[0]), close(err[0]);
    return r;
  }
  const double deadline = now_s() + timeout;
  double kill_at = 0;  // when a stopping QEMU gets SIGKILL
  std::string logline;
  pollfd fds[3] = {{out[0], POLLIN, 0}, {log[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 3;
  while (open_fds > 0) {
    const double t = now_s();
    if (g_signal && !kill_at) {
      kill(-pid, SIGTERM);  // again: the signal may have come before QEMU was there to get it
      kill_at = t + 3;
    }
    if (t >= deadline || (kill_at && t >= kill_at)) {
      r.timed_out = !g_signal;
      kill(-pid, SIGKILL);
      break;
    }
    const double left = (kill_at ? kill_at : deadline) - t;
    const int n = poll(fds, 3, int(left * 1000) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; n > 0 && i < 3; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      const ssize_t k = read(fds[i].fd, buf, sizeof buf);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (i == 0) {
        r.wrote_stdout = true;
        if (!write_all(1, buf, size_t(k)) && !g_signal) {
          g_signal = SIGPIPE;  // nobody reads our stdout any more: stop the machine
          kill(-pid, SIGTERM);
        }
      } else if (i == 1) {
        r.saw_kernel = true;
        write_all(2, buf, size_t(k));
        for (ssize_t j = 0; j < k; ++j) {
          if (buf[j] != '\n') {
            if (logline.size() < 4096) logline += buf[j];
            continue;
          }
          int st;
          if (logline.compare(0, 9, "[bf] exit") == 0 && sscanf(logline.c_str(), "[bf] exit %d", &st) == 1) r.status = st;
          logline.clear();
        }
      } else {
        r.qemu_err.append(buf, size_t(k));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  r.qemu_status = reap(pid);
  return r;
}

// The ISO form: a GRUB tree with the kernel ELF and the modules, made into dir/boot.iso by
// grub-mkrescue. Returns "" or what went wrong.
std::string make_iso(const std::string& dir, const std::string& kelf, const std::vector<Module>& mods,
                     const std::string& options) {
  for (const char* d : {"iso", "iso/boot", "iso/boot/grub", "iso/boot/m"})
    if (mkdir((dir + "/" + d).c_str(), 0755) != 0) return std::string("cannot create ") + d + ": " + strerror(errno);
  if (!copy_file(kelf, dir + "/iso/boot/bareflow-kernel.elf")) return g_signal ? "" : "cannot copy " + kelf;
  // Module names are [A-Za-z0-9._-] and the options fixed words: nothing here for GRUB to expand.
  std::string cfg = "set timeout=0\nset default=0\nmenuentry \"BareFlow\" {\n  multiboot2 /boot/bareflow-kernel.elf " +
                    options + "\n";
  for (const Module& m : mods) {
    if (!copy_file(dir + "/m/" + m.name, dir + "/iso/boot/m/" + m.name)) return g_signal ? "" : "cannot copy " + m.host;
    cfg += "  module2 /boot/m/" + m.name + " " + m.name + "\n";
  }
  cfg += "  boot\n}\n";
  if (!write_file(dir + "/iso/boot/grub/grub.cfg", cfg)) return "cannot write grub.cfg";
  const int logfd = open((dir + "/mkrescue.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0) return "cannot create mkrescue.log";
  const pid_t pid = spawn({"grub-mkrescue", "-o", "boot.iso", "iso"}, dir, {-1, logfd, logfd});
  close(logfd);
  if (pid < 0) return std::string("fork: ") + strerror(errno);
  const int st = reap(pid);
  if (st == 0 || g_signal) return "";
  // Its last line says why (it is removed with the staging directory).
  std::string last = "exit status " + std::to_string(st);
  if (FILE* f = fopen((dir + "/mkrescue.log").c_str(), "r")) {
    char line[512];
    while (fgets(line, sizeof line, f))
      if (line[0] && line[0] != '\n') last = std::string(line, strcspn(line, "\n"));
    fclose(f);
  }
  return "grub-mkrescue failed: " + last;
}

bool kvm_usable() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
}

int interrupted() {
  fprintf(stderr, "%s: stopped by signal %d (%s)\n", g_prog, int(g_signal), strsignal(g_signal));
  return 128 + g_signal;
}

// "512M", "2G", "300000K", "256" (MiB, as QEMU reads it) -> bytes; 0 if it is not a size.
uint64_t parse_size(const std::string& s) {
  size_t digits = 0;
  while (digits < s.size() && isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == 0 || digits > 12 || s.size() > digits + 1) return 0;
  const char unit = s.size() > digits ? char(toupper(static_cast<unsigned char>(s[digits]))) : 'M';
  const uint64_t v = strtoull(s.substr(0, digits).c_str(), nullptr, 10);
  const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : -1;
  if (shift < 0 || v == 0 || v > (1ull << (50 - shift))) return 0;
  return v << shift;
}

}  // namespace

bool usable_module_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name == "argv" || name == "appliance") return false;
  for (char c : name)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

namespace {

// Makes `tmp` durable and renames it to `to`: a reader sees the old file or the new one, whole.
std::string publish(const std::string& tmp, const std::string& to) {
  const int fd = open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!synced || rename(tmp.c_str(), to.c_str()) != 0) {
    const std::string why = to + ": " + strerror(errno);
    unlink(tmp.c_str());
    return why;
  }
  return "";
}

std::string install_copy(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  unlink(tmp.c_str());
  if (!copy_file(from, tmp)) {
    const std::string why = "cannot copy " + from + " to " + tmp + ": " + strerror(errno);
    unlink(tmp.c_str());
    return why;
  }
  return publish(tmp, to);
}

void sync_dir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) fsync(fd), close(fd);
}

// The baked files of an image, sorted by name (the order they become modules).
std::vector<std::string> image_weights(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir((dir + "/weights").c_str())) {
    while (const dirent* e = readdir(d))
      if (usable_module_name(e->d_name) && !std::string(e->d_name).ends_with(".tmp") &&  // an interrupted copy
          regular_file(dir + "/weights/" + e->d_name))
        names.push_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string write_image(const std::string& dir, const std::vector<ImageFile>& weights,
                        const std::vector<std::string>& args) {
  // A signal stops the copies and grub-mkrescue; the staging directory goes with the guard.
  SignalGuard signals;
  const std::string kdir = find_kernel_dir(Options{});
  for (const char* k : {"bareflow-kernel.bin", "bareflow-kernel.elf"})
    if (!regular_file(kdir + "/" + k)) return "kernel image " + kdir + "/" + k + " not found (build it: make image)";
  for (const ImageFile& w : weights)
    if (!usable_module_name(w.name)) return w.name + ": not usable as a boot module's name";
  // The argv module and the ISO are what make the directory bootable: gone until this image's are
  // in place, so a failure half-way never leaves an earlier image's to boot with the new files.
  unlink((dir + "/argv").c_str());
  unlink((dir + "/bareflow.iso").c_str());
  for (const char* k : {"bareflow-kernel.bin", "bareflow-kernel.elf"})
    if (std::string e = install_copy(kdir + "/" + k, dir + "/" + k); !e.empty()) return e;
  // The baked files: exactly `weights` (a file of an earlier export that is not among them goes).
  const std::string wdir = dir + "/weights";
  for (const std::string& old : image_weights(dir)) {
    bool keep = false;
    for (const ImageFile& w : weights) keep |= w.name == old;
    if (!keep) unlink((wdir + "/" + old).c_str());
  }
  if (weights.empty()) {
    rmdir(wdir.c_str());
  } else {
    if (mkdir(wdir.c_str(), 0755) != 0 && errno != EEXIST) return wdir + ": " + strerror(errno);
    for (const ImageFile& w : weights)
      if (std::string e = install_copy(w.host, wdir + "/" + w.name); !e.empty()) return e;
    sync_dir(wdir);
  }
  std::vector<std::string> argv = {"appliance"};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string argv_bytes = argv_module(argv);

  // The ISO: staged as a boot's is (the modules linked into dir/m), made by grub-mkrescue.
  StagingDir staging;
  {
    const char* t = getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/bareflow-image-XXXXXX";
    if (!mkdtemp(tmpl.data())) return std::string("cannot create a staging directory: ") + strerror(errno);
    staging.path = tmpl;
  }
  const std::string& sd = staging.path;
  if (mkdir((sd + "/m").c_str(), 0755) != 0) return sd + "/m: " + strerror(errno);
  std::vector<Module> mods = {{dir + "/appliance", "appliance", 0}};
  for (const ImageFile& w : weights) mods.push_back({wdir + "/" + w.name, w.name, 0});
  for (const Module& m : mods) {
    char real[PATH_MAX];
    if (!realpath(m.host.c_str(), real) || symlink(real, (sd + "/m/" + m.name).c_str()) != 0)
      return "cannot stage " + m.host + ": " + strerror(errno);
  }
  if (!write_file(sd + "/m/argv", argv_bytes)) return "cannot write the argv module";
  mods.push_back({"", "argv", argv_bytes.size()});
  if (std::string e = make_iso(sd, dir + "/bareflow-kernel.elf", mods, ""); !e.empty()) return e;
  if (g_signal) return std::string("stopped by signal ") + strsignal(g_signal);
  if (std::string e = install_copy(sd + "/boot.iso", dir + "/bareflow.iso"); !e.empty()) return e;
  if (!write_file(dir + "/argv.tmp", argv_bytes) && !(unlink((dir + "/argv.tmp").c_str()) == 0 &&
                                                      write_file(dir + "/argv.tmp", argv_bytes)))
    return dir + "/argv.tmp: " + strerror(errno);
  if (std::string e = publish(dir + "/argv.tmp", dir + "/argv"); !e.empty()) return e;
  sync_dir(dir);
  if (g_signal) return std::string("stopped by signal ") + strsignal(g_signal);
  return "";
}

std::string parse_flags(int argc, char** argv, Options* o, bool* help) {
  *help = false;
  int i = 1;
  std::string err;
  auto value = [&](const char* flag) -> std::string {
    if (i + 1 >= argc) {
      if (err.empty()) err = std::string(flag) + ": missing value";
      return "";
    }
    return argv[++i];
  };
  for (; i < argc && err.empty(); ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    } else if (a == "--iso") o->iso = true;
    else if (a == "--kvm") o->accel = Accel::Kvm;
    else if (a == "--tcg") o->accel = Accel::Tcg;
    else if (a == "--mem") {
      o->mem_text = value("--mem");
      if (!err.empty()) break;
      o->mem = parse_size(o->mem_text);
      if (!o->mem) err = "--mem: '" + o->mem_text + "' is not a size (a number with K, M or G, e.g. 512M)";
    } else if (a == "--machine") {
      const std::string m = value("--machine");
      if (err.empty() && m != "pc" && m != "microvm") err = "--machine: '" + m + "' is not microvm or pc";
      o->pc = m == "pc";
    } else if (a == "--timeout") {
      const std::string t = value("--timeout");
      char* end = nullptr;
      errno = 0;
      const long v = err.empty() ? strtol(t.c_str(), &end, 10) : 0;
      if (err.empty() && (t.empty() || *end || errno))
        err = "--timeout: '" + t + "' is not an integer";
      else if (err.empty() && (v < 1 || v > 86400))
        err = "--timeout: " + std::to_string(v) + " is out of range [1, 86400]";
      o->timeout = int(v);
    } else if (a == "--app") o->app = value("--app");
    else if (a == "--image") o->image = value("--image");
    else if (a == "--kernel") o->kernel_dir = value("--kernel");
    else if (a == "--module") o->modules.push_back(value("--module"));
    else if (a == "--disk") o->disk = value("--disk");
    else if (a == "--disk-size") {
      const std::string t = value("--disk-size");
      if (!err.empty()) break;
      o->disk_size = parse_size(t);
      if (!o->disk_size || o->disk_size % 512 || o->disk_size < kMiB)
        err = "--disk-size: '" + t + "' is not a size of at least 1M in whole 512-byte sectors";
    } else if (a == "--disk-init") o->disk_init = true;
    else if (a == "--virtio") {
      const std::string v = value("--virtio");
      if (err.empty() && v != "modern" && v != "legacy") err = "--virtio: '" + v + "' is not modern or legacy";
      o->virtio_legacy = v == "legacy";
    } else if (a == "--strace") o->strace = true;
    else if (a == "--code-pages") o->code_pages = true;
    else if (a == "-v" || a == "--verbose") o->verbose = true;
    else if (a == "-h" || a == "--help") {
      *help = true;
      return "";
    } else {
      err = a + ": unknown flag (see bareflow boot --help)";
    }
  }
  if (!err.empty()) return err;
  for (; i < argc; ++i) o->args.push_back({argv[i], false});
  return "";
}

int launch(const Options& o, const char* prog) {
  g_prog = prog;
  if (!o.image.empty()) {
    if (!o.app.empty() || !o.kernel_dir.empty()) return complain("--image names the application and the kernel: no --app or --kernel with it");
    if (!regular_file(o.image + "/appliance") || !regular_file(o.image + "/argv"))
      return complain("--image %s: not an appliance image (no appliance or argv in it; write one with bareflow export --image)",
                      o.image.c_str());
  }
  const std::string kdir = o.image.empty() ? find_kernel_dir(o) : o.image;
  const std::string kimage = kdir + (o.iso ? "/bareflow-kernel.elf" : "/bareflow-kernel.bin");
  if (!regular_file(kimage)) return complain("kernel image %s not found (build it: make image)", kimage.c_str());
  const std::string app = !o.image.empty() ? o.image + "/appliance" : o.app.empty() ? self_exe() : o.app;
  // An image without guest arguments boots as it would on its own: its own argv module, and with
  // --iso its own ISO, byte for byte.
  const bool image_as_is = !o.image.empty() && o.args.empty();
  std::string image_argv;
  if (image_as_is) {
    // The image's own argv module, checked as the kernel will parse it (any length up to 1 MiB).
    uint64_t size = 0;
    const std::string path = o.image + "/argv";
    FILE* f = regular_file(path, &size) && size <= kMiB ? fopen(path.c_str(), "rb") : nullptr;
    image_argv.resize(f ? size_t(size) : 0);
    const bool read = f && fread(image_argv.data(), 1, image_argv.size(), f) == image_argv.size();
    if (f) fclose(f);
    const char* argv[256];
    unsigned argc = 0;
    const char* why = read ? kern::parse_argv_module(image_argv.data(), image_argv.size(), argv, 256, &argc)
                           : "unreadable or over 1 MiB";
    if (why) return complain("--image %s: its argv is not an argv module (%s)", o.image.c_str(), why);
  }
  // The modules: the application first (the kernel's default argv0), then --module files, then
  // the file arguments, in order.
  std::vector<Module> mods;
  auto add_module = [&](const std::string& host, const char* what) {
    Module m{host, guest_name(host, mods)};
    if (!regular_file(host, &m.size)) return complain("%s %s is not a file", what, host.c_str()), false;
    if (mods.size() + 1 >= kMaxModules)  // one slot is the argv module's
      return complain("more than %zu files; the kernel takes at most %zu modules", kMaxModules - 2, kMaxModules), false;
    mods.push_back(m);
    return true;
  };
  if (!add_module(app, "application")) return 2;
  if (!o.image.empty())
    for (const std::string& w : image_weights(o.image))
      if (!add_module(o.image + "/weights/" + w, "baked file")) return 2;
  for (const std::string& f : o.modules)
    if (!add_module(f, "--module")) return 2;
  std::vector<std::string> guest_argv = {mods[0].name};
  for (const GuestArg& a : o.args) {
    if (a.file && !add_module(a.text, "file argument")) return 2;
    guest_argv.push_back(a.file ? "/" + mods.back().name : a.text);
  }
  const std::string argv_bytes = image_as_is ? image_argv : argv_module(guest_argv);

  uint64_t need = needed_ram(mods, elf_data_bytes(app)) + round_up(argv_bytes.size(), 2 * kMiB);
  uint64_t mem = o.mem;
  if (mem && mem < need)
    return complain("--mem %s is too small for these modules: they need at least %llu MiB", o.mem_text.c_str(),
                    (unsigned long long)(need / kMiB));
  const uint64_t host_ram = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
  if (mem && host_ram && mem > host_ram)
    return complain("--mem %s is more than this machine's %llu MiB of RAM", o.mem_text.c_str(),
                    (unsigned long long)(host_ram / kMiB));
  if (!mem) {
    mem = 256 * kMiB;
    for (const Module& m : mods) mem += 2 * m.size;
    mem = round_up(mem > need ? mem : need, kMiB);
  }

  SignalGuard signals;
  StagingDir staging;
  {
    const char* t = getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/bareflow-boot-XXXXXX";
    if (!mkdtemp(tmpl.data())) return complain("cannot create a staging directory in %s: %s", t && *t ? t : "/tmp", strerror(errno));
    staging.path = tmpl;
  }
  const std::string& dir = staging.path;
  // Everything QEMU reads is named relative to the staging directory (its working directory), with
  // safe names: a quote, comma or space in a host path never reaches QEMU's option syntax or the
  // kernel command line (QEMU prepends the kernel's file name to it).
  if (mkdir((dir + "/m").c_str(), 0755) != 0) return complain("cannot create %s/m: %s", dir.c_str(), strerror(errno));
  // Symlinks to absolute paths: QEMU runs in the staging directory.
  auto stage = [&](const std::string& host, const std::string& link) {
    char real[PATH_MAX];
    if (realpath(host.c_str(), real) && symlink(real, (dir + "/" + link).c_str()) == 0) return true;
    complain("cannot stage %s: %s", host.c_str(), strerror(errno));
    return false;
  };
  for (const Module& m : mods)
    if (!stage(m.host, "m/" + m.name)) return 2;
  if (!write_file(dir + "/m/argv", argv_bytes)) return complain("cannot write the argv module in %s", dir.c_str());
  std::vector<Module> all = mods;
  all.push_back({"", "argv", argv_bytes.size()});
  const std::string options = std::string(o.strace ? "strace" : "") + (o.strace && o.code_pages ? " " : "") +
                              (o.code_pages ? "codepages" : "");

  // The -kernel form runs on QEMU's microvm by default: no BIOS, so it boots in a fraction of the
  // time (under nested KVM 0.6 s instead of 4 s). The ISO needs a PC with a BIOS and a CD drive.
  const bool microvm = !o.iso && !o.pc;
  std::vector<std::string> q = {"qemu-system-x86_64", "-M", microvm ? "microvm,isa-serial=on,rtc=on,pic=on,pit=on" : "pc",
                                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                                "-m", std::to_string(mem / kMiB) + "M",
                                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"};
  if (!o.disk.empty()) {
    // The disk file: created sparse when missing (or zeroed on --disk-init), never shrunk.
    const bool exists = access(o.disk.c_str(), F_OK) == 0;
    const int fd = open(o.disk.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (o.disk_init ? O_TRUNC : 0), 0644);
    if (fd < 0) return complain("--disk %s: %s", o.disk.c_str(), strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return complain("--disk %s: not a regular file", o.disk.c_str());
    }
    const bool sized = exists && !o.disk_init ? true : ftruncate(fd, off_t(o.disk_size)) == 0;
    close(fd);
    if (!sized) return complain("--disk %s: cannot size it: %s", o.disk.c_str(), strerror(errno));
    const uint64_t size = uint64_t(st.st_size);
    if (exists && !o.disk_init && (size < kMiB || size % 512))
      return complain("--disk %s: %lu bytes is not a disk (at least 1M in whole 512-byte sectors); --disk-init makes it one",
                      o.disk.c_str(), static_cast<unsigned long>(size));
    char* abs = realpath(o.disk.c_str(), nullptr);
    if (!abs) return complain("--disk %s: %s", o.disk.c_str(), strerror(errno));
    std::string path;
    for (const char* c = abs; *c; ++c) path += *c == ',' ? std::string(",,") : std::string(1, *c);  // QEMU's escape
    free(abs);
    q.insert(q.end(), {"-drive", "file=" + path + ",format=raw,if=none,id=disk0,cache=writeback,discard=unmap",
                       "-device", std::string(microvm ? "virtio-blk-device" : "virtio-blk-pci") + ",drive=disk0"});
    if (microvm && !o.virtio_legacy) q.insert(q.end(), {"-global", "virtio-mmio.force-legacy=false"});
  }
  if (o.iso && image_as_is && !o.strace && !o.code_pages && o.modules.empty()) {
    if (!stage(o.image + "/bareflow.iso", "boot.iso")) return 2;
    q.insert(q.end(), {"-cdrom", "boot.iso", "-boot", "d"});
  } else if (o.iso) {
    const std::string err = make_iso(dir, kimage, all, options);
    if (g_signal) return interrupted();
    if (!err.empty()) return complain("%s", err.c_str());
    q.insert(q.end(), {"-cdrom", "boot.iso", "-boot", "d"});
  } else {
    if (!stage(kimage, "bareflow-kernel.bin")) return 2;
    std::string initrd;
    for (const Module& m : all) initrd += (initrd.empty() ? "" : ",") + ("m/" + m.name + " " + m.name);
    q.insert(q.end(), {"-kernel", "bareflow-kernel.bin", "-append", options, "-initrd", initrd});
  }

  const bool try_kvm = o.accel == Accel::Kvm || (o.accel == Accel::Auto && kvm_usable());
  auto with_accel = [&](bool kvm) {
    std::vector<std::string> v = q;
    if (kvm) v.insert(v.end(), {"-accel", "kvm", "-cpu", "host,-arch-capabilities"});
    else v.insert(v.end(), {"-accel", "tcg", "-cpu", "max"});
    return v;
  };
  if (g_signal) return interrupted();
  RunResult r = run_qemu(with_accel(try_kvm), dir, microvm, o.timeout, o.verbose);
  if (try_kvm && o.accel == Accel::Auto && !r.saw_kernel && !r.wrote_stdout && !r.timed_out && !g_signal) {
    fprintf(stderr, "%s: KVM did not start the machine, falling back to TCG\n", g_prog);
    r = run_qemu(with_accel(false), dir, microvm, o.timeout, o.verbose);
  }
  if (g_signal) return interrupted();
  if (!r.qemu_err.empty() && (r.status < 0 || o.verbose)) fputs(r.qemu_err.c_str(), stderr);
  if (r.timed_out) {
    fprintf(stderr, "%s: timed out after %d s\n", g_prog, o.timeout);
    return 124;
  }
  if (r.status < 0) {
    fprintf(stderr, "%s: the machine stopped without an exit status (qemu exit %d)\n", g_prog, r.qemu_status);
    return 125;
  }
  return r.status;
}

}  // namespace bf::boot
