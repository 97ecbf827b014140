// bareflow boot: runs `bareflow ARGS...` inside the BareFlow unikernel under QEMU.
//
// Every argument naming an existing host file becomes a boot module and is rewritten to its path
// inside the guest ("/name"); the application module is this very executable. The guest's stdout
// (COM2) comes out on our stdout byte for byte, the kernel log and the guest's stderr (COM1) on our
// stderr, and the guest's exit status ("[bf] exit N" on COM1) is our exit status.
// See kernel/README.md.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli/args.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow boot [--iso] [--kvm|--tcg] [--machine microvm|pc] [--mem SIZE] [--timeout SEC]\n"
    "                     [--strace] [--code-pages] [-v] [--app EXE] [--kernel DIR] -- ARGS...\n"
    "  boots the BareFlow unikernel under QEMU and runs `bareflow ARGS...` inside it\n"
    "  --iso         boot a GRUB ISO (Multiboot2) instead of qemu -kernel (Multiboot1)\n"
    "  --kvm, --tcg  accelerator (default: KVM when /dev/kvm works, else TCG)\n"
    "  --machine M   QEMU machine for the -kernel form: microvm (default: no BIOS, fastest) or pc\n"
    "  --mem SIZE    guest RAM, QEMU syntax (default: 256M + 2 x the boot modules)\n"
    "  --timeout SEC kill the machine after SEC seconds (default 600): exit status 124\n"
    "  --strace      the kernel logs every system call\n"
    "  --code-pages  map the app's code with 4 KiB pages; at exit the kernel logs how many it used\n"
    "                and how many LLVM / bareflow functions lie on used pages\n"
    "  --app EXE     application executable (default: this bareflow)\n"
    "  --kernel DIR  directory holding bareflow-kernel.bin/.elf (default: beside this executable)\n"
    "  -v            print the QEMU command line\n";

struct Options {
  bool iso = false, verbose = false, strace = false, pc = false, code_pages = false;
  int accel = 0;  // 0 auto, 1 kvm, 2 tcg
  std::string mem, app = "/proc/self/exe", kernel_dir;
  int timeout = 600;
  std::vector<std::string> args;
};

std::string dirname_of(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? "." : s == 0 ? "/" : p.substr(0, s);
}

std::string basename_of(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, size_t(n));
}

std::string find_kernel_dir(const Options& o) {
  if (!o.kernel_dir.empty()) return o.kernel_dir;
  if (const char* e = getenv("BAREFLOW_KERNEL_DIR")) return e;
  const std::string d = dirname_of(self_exe());
  for (const std::string& c : {d + "/kernel", d, d + "/../kernel"})
    if (is_file(c + "/bareflow-kernel.bin")) return c;
  return d + "/kernel";
}

// Guest file names: the basename, restricted to characters that survive QEMU's -initrd syntax and
// the kernel command line, made unique.
std::string guest_name(const std::string& host, std::vector<std::string>& used) {
  std::string n = basename_of(host);
  for (char& c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (n.empty()) n = "file";
  std::string u = n;
  for (int i = 2; ; ++i) {
    bool clash = false;
    for (const auto& x : used) clash |= x == u;
    if (!clash) break;
    u = std::to_string(i) + "-" + n;
  }
  used.push_back(u);
  return u;
}

std::string quote_arg(const std::string& a) {
  std::string q = "\"";
  for (char c : a) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

bool kvm_usable() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
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

bool write_all(int fd, const char* p, size_t n) {
  while (n) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

// Runs QEMU with COM1 -> fd 4 and COM2 -> fd 3 (pipes we read), relaying them.
RunResult run_qemu(std::vector<std::string> argv, bool microvm, int timeout, bool verbose) {
  RunResult r;
  int out[2], log[2], err[2];
  if (pipe(out) || pipe(log) || pipe2(err, O_CLOEXEC)) {
    perror("bareflow boot: pipe");
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
    std::string line = "bareflow boot:";
    for (const auto& a : argv) line += " " + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
    fprintf(stderr, "%s\n", line.c_str());
  }
  const pid_t pid = fork();
  if (pid == 0) {
    // Child: fds 3/4 are the serial sinks; QEMU's own stdout/stderr go to the err pipe.
    const int o = dup(out[1]), l = dup(log[1]);
    dup2(o, 3), dup2(l, 4);
    dup2(err[1], 1), dup2(err[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (int fd = 5; fd < 1024; ++fd) close(fd);
    std::vector<char*> av;
    for (auto& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    execvp(av[0], av.data());
    fprintf(stderr, "cannot run %s: %s\n", av[0], strerror(errno));
    _exit(127);
  }
  close(out[1]), close(log[1]), close(err[1]);
  if (pid < 0) {
    perror("bareflow boot: fork");
    return r;
  }
  const double deadline = now_s() + timeout;
  std::string logline;
  pollfd fds[3] = {{out[0], POLLIN, 0}, {log[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 3;
  while (open_fds > 0) {
    const double left = deadline - now_s();
    if (left <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const int n = poll(fds, 3, int(left * 1000) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 3; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      const ssize_t k = read(fds[i].fd, buf, sizeof buf);
      if (k <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (i == 0) {
        r.wrote_stdout = true;
        write_all(1, buf, size_t(k));
      } else if (i == 1) {
        r.saw_kernel = true;
        write_all(2, buf, size_t(k));
        for (ssize_t j = 0; j < k; ++j) {
          if (buf[j] != '\n') {
            if (logline.size() < 4096) logline += buf[j];
            continue;
          }
          int st;
          if (sscanf(logline.c_str(), "[bf] exit %d", &st) == 1 && logline.compare(0, 9, "[bf] exit") == 0) r.status = st;
          logline.clear();
        }
      } else {
        r.qemu_err.append(buf, size_t(k));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int ws = 0;
  waitpid(pid, &ws, 0);
  r.qemu_status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return r;
}

}  // namespace

int cmd_boot(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) fail(flag, "missing value");
      return argv[++i];
    };
    if (a == "--") {
      ++i;
      break;
    } else if (a == "--iso") o.iso = true;
    else if (a == "--kvm") o.accel = 1;
    else if (a == "--tcg") o.accel = 2;
    else if (a == "--mem") o.mem = value("--mem");
    else if (a == "--machine") {
      const std::string m = value("--machine");
      if (m != "pc" && m != "microvm") fail("--machine", "'" + m + "' is not microvm or pc");
      o.pc = m == "pc";
    }
    else if (a == "--timeout") o.timeout = int(parse_int("--timeout", value("--timeout"), 1, 86400));
    else if (a == "--app") o.app = value("--app");
    else if (a == "--kernel") o.kernel_dir = value("--kernel");
    else if (a == "--strace") o.strace = true;
    else if (a == "--code-pages") o.code_pages = true;
    else if (a == "-v" || a == "--verbose") o.verbose = true;
    else if (a == "-h" || a == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fail(a, "unknown flag (see bareflow boot --help)");
    }
  }
  for (; i < argc; ++i) o.args.push_back(argv[i]);
  if (o.timeout <= 0) o.timeout = 600;

  const std::string kdir = find_kernel_dir(o);
  const std::string kbin = kdir + "/bareflow-kernel.bin", kelf = kdir + "/bareflow-kernel.elf";
  if (!is_file(o.iso ? kelf : kbin)) {
    fprintf(stderr, "bareflow boot: kernel image %s not found (build it: make image)\n", (o.iso ? kelf : kbin).c_str());
    return 2;
  }
  std::string app = o.app == "/proc/self/exe" ? self_exe() : o.app;
  if (!is_file(app)) {
    fprintf(stderr, "bareflow boot: application %s not found\n", app.c_str());
    return 2;
  }

  // Stage the modules as symlinks with safe names in a private directory.
  char tmpl[] = "/tmp/bareflow-boot-XXXXXX";
  const char* tmp = mkdtemp(tmpl);
  if (!tmp) {
    perror("bareflow boot: mkdtemp");
    return 2;
  }
  const std::string dir = tmp;
  std::vector<std::string> used, staged, names;
  long long module_bytes = 0;
  auto stage = [&](const std::string& host) {
    const std::string n = guest_name(host, used);
    char real[4096];
    const std::string target = realpath(host.c_str(), real) ? real : host;
    const std::string link = dir + "/" + n;
    if (symlink(target.c_str(), link.c_str()) != 0) perror("bareflow boot: symlink");
    off_t sz = 0;
    is_file(target, &sz);
    module_bytes += sz;
    staged.push_back(link), names.push_back(n);
    return n;
  };
  const std::string app_name = stage(app);
  std::string cmdline = std::string(o.strace ? "strace " : "") + (o.code_pages ? "codepages " : "") + "-- " +
                        quote_arg(app_name);
  for (const std::string& a : o.args) {
    std::string g = a;
    if (is_file(a)) {
      if (staged.size() >= 16) {
        fprintf(stderr, "bareflow boot: more than 15 files; the kernel takes at most 16 modules\n");
        return 2;
      }
      g = "/" + stage(a);
    }
    cmdline += " " + quote_arg(g);
  }
  if (o.mem.empty()) {
    long long mib = 256 + 2 * (module_bytes >> 20);
    o.mem = std::to_string(mib) + "M";
  }

  // The -kernel form runs on QEMU's microvm by default: no BIOS, so it boots in a fraction of the
  // time (under nested KVM 0.6 s instead of 4 s). The ISO needs a PC with a BIOS and a CD drive.
  const bool microvm = !o.iso && !o.pc;
  std::vector<std::string> q = {"qemu-system-x86_64", "-M", microvm ? "microvm,isa-serial=on,rtc=on,pic=on,pit=on" : "pc",
                                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-m", o.mem,
                                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"};
  if (o.iso) {
    // A GRUB ISO holding the kernel ELF (Multiboot2) and the modules.
    const std::string root = dir + "/iso";
    std::string cfg = "set timeout=0\nset default=0\nmenuentry \"BareFlow\" {\n  multiboot2 /boot/bareflow-kernel.elf " +
                      cmdline + "\n";
    std::string cp = "mkdir -p '" + root + "/boot/grub' '" + root + "/boot/m' && cp '" + kelf + "' '" + root + "/boot/'";
    for (size_t k = 0; k < staged.size(); ++k) {
      cp += " && cp -L '" + staged[k] + "' '" + root + "/boot/m/'";
      cfg += "  module2 /boot/m/" + names[k] + " " + names[k] + "\n";
    }
    cfg += "  boot\n}\n";
    if (system(cp.c_str()) != 0) {
      fprintf(stderr, "bareflow boot: cannot stage the ISO tree\n");
      return 2;
    }
    FILE* f = fopen((root + "/boot/grub/grub.cfg").c_str(), "w");
    if (!f) return 2;
    fputs(cfg.c_str(), f);
    fclose(f);
    const std::string mk = "grub-mkrescue -o '" + dir + "/boot.iso' '" + root + "' >'" + dir + "/mkrescue.log' 2>&1";
    if (system(mk.c_str()) != 0) {
      fprintf(stderr, "bareflow boot: grub-mkrescue failed (see %s/mkrescue.log)\n", dir.c_str());
      return 2;
    }
    q.insert(q.end(), {"-cdrom", dir + "/boot.iso", "-boot", "d"});
  } else {
    std::string initrd;
    for (size_t k = 0; k < staged.size(); ++k) initrd += (k ? "," : "") + staged[k] + " " + names[k];
    q.insert(q.end(), {"-kernel", kbin, "-append", cmdline, "-initrd", initrd});
  }

  const bool try_kvm = o.accel == 1 || (o.accel == 0 && kvm_usable());
  auto with_accel = [&](bool kvm) {
    std::vector<std::string> v = q;
    if (kvm) v.insert(v.end(), {"-accel", "kvm", "-cpu", "host,-arch-capabilities"});
    else v.insert(v.end(), {"-accel", "tcg", "-cpu", "max"});
    return v;
  };
  RunResult r = run_qemu(with_accel(try_kvm), microvm, o.timeout, o.verbose);
  if (try_kvm && o.accel == 0 && !r.saw_kernel && !r.wrote_stdout && !r.timed_out) {
    fprintf(stderr, "bareflow boot: KVM did not start the machine, falling back to TCG\n");
    r = run_qemu(with_accel(false), microvm, o.timeout, o.verbose);
  }
  if (!r.qemu_err.empty() && (r.status < 0 || o.verbose)) fputs(r.qemu_err.c_str(), stderr);
  // Clean up the staging directory (symlinks, ISO tree).
  const std::string rm = "rm -rf '" + dir + "'";
  if (system(rm.c_str()) != 0) fprintf(stderr, "bareflow boot: could not remove %s\n", dir.c_str());
  if (r.timed_out) {
    fprintf(stderr, "bareflow boot: timed out after %d s\n", o.timeout);
    return 124;
  }
  if (r.status < 0) {
    fprintf(stderr, "bareflow boot: the machine stopped without an exit status (qemu exit %d)\n", r.qemu_status);
    return 125;
  }
  return r.status;
}

}  // namespace bf::cli
