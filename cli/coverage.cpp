// bareflow coverage: which of this executable's functions a run of it executes, exactly, by
// breakpoint coverage. The run is a child process under ptrace; before its first instruction
// every function entry of the symbol table gets an int3; the first hit of each is recorded, its
// byte put back and the thread resumed at it, so each function traps once and then runs at full
// speed. The measured counterpart of "most of LLVM is never used" (docs/SHRINK.md).
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run.h"
#include "native/elf_symbols.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow coverage [--list FILE] COMMAND [ARGS...]\n"
    "  Runs `bareflow COMMAND ARGS...` with a breakpoint on every function entry of this executable\n"
    "  and reports, per origin (LLVM, BareFlow, libstdc++, C libraries), how many functions ran.\n"
    "  --list FILE   also write the (mangled) names of the functions that ran, one per line\n";

enum class Origin : uint8_t { Llvm, Bareflow, Libstdcxx, OtherCxx, C, Count };
const char* const kOriginNames[] = {"LLVM", "BareFlow", "libstdc++", "other C++ (anonymous namespaces)",
                                    "C (glibc, libgcc, libm, ...)"};

struct Function {
  uint64_t addr, size;
  std::string name;
  Origin origin;
  uint8_t saved = 0;  // the byte the int3 replaced
  bool ran = false;
};

// By the mangled name: a function that mentions llvm:: (its own, or a std template instantiated for
// LLVM's types) is LLVM's; likewise bf::; then the C++ runtime's; unmangled names are C.
Origin origin_of(std::string_view n) {
  if (native::is_llvm_symbol(n)) return Origin::Llvm;
  if (n.find("N2bf") != std::string_view::npos || n.find("NK2bf") != std::string_view::npos || n.rfind("bf_", 0) == 0 ||
      n == "main")
    return Origin::Bareflow;
  if (n.rfind("_Z", 0) != 0) return Origin::C;
  for (const char* p : {"_ZNSt", "_ZNKSt", "_ZSt", "_ZN9__gnu_cxx", "_ZNK9__gnu_cxx", "_ZN10__cxxabiv1",
                        "_ZNK10__cxxabiv1", "_ZNSs", "_ZNKSs", "_Znw", "_Zna", "_Zdl", "_Zda", "_ZTh", "_ZTv"})
    if (n.rfind(p, 0) == 0) return Origin::Libstdcxx;
  return Origin::OtherCxx;
}

// Every function of the executable's symbol table in an executable section, sorted by address,
// one per address (aliases share an entry).
std::vector<Function> functions_of(const std::string& path) {
  std::vector<Function> out;
  for (native::FunctionSymbol& f : native::function_symbols(path))
    if (f.in_code) out.push_back({f.addr, f.size, std::move(f.name), Origin::C});
  if (out.empty()) fail(path, "has no function symbols (stripped?)");
  for (Function& f : out) f.origin = origin_of(f.name);
  std::sort(out.begin(), out.end(), [](const Function& a, const Function& b) { return a.addr < b.addr; });
  out.erase(std::unique(out.begin(), out.end(), [](const Function& a, const Function& b) { return a.addr == b.addr; }),
            out.end());
  return out;
}

// Reads or writes the traced child's memory (its text is read-only to it, not to its tracer).
bool child_memory(int mem, uint64_t addr, void* buf, size_t n, bool write) {
  const ssize_t done = write ? pwrite(mem, buf, n, off_t(addr)) : pread(mem, buf, n, off_t(addr));
  return done == ssize_t(n);
}

// Plants an int3 on every function entry, reading and writing the text in large spans.
void plant(int mem, std::vector<Function>& fns) {
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < fns.size();) {
    // A span of functions whose entries lie within 1 MiB.
    size_t j = i;
    while (j + 1 < fns.size() && fns[j + 1].addr - fns[i].addr < (1u << 20)) j++;
    const uint64_t lo = fns[i].addr, hi = fns[j].addr + 1;
    buf.resize(hi - lo);
    if (!child_memory(mem, lo, buf.data(), buf.size(), false)) fail("coverage", "cannot read the child's text");
    for (size_t k = i; k <= j; k++) {
      fns[k].saved = buf[fns[k].addr - lo];
      buf[fns[k].addr - lo] = 0xcc;
    }
    if (!child_memory(mem, lo, buf.data(), buf.size(), true)) fail("coverage", "cannot write the child's text");
    i = j + 1;
  }
}

}  // namespace

int cmd_coverage(int argc, char** argv) {
  std::string list;
  int first = 1;
  while (first < argc && argv[first][0] == '-') {
    const std::string f = argv[first];
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (f != "--list" || first + 1 >= argc) fail(f, "unknown flag or missing value (see bareflow coverage --help)");
    list = argv[first + 1];
    first += 2;
  }
  if (first >= argc) fail("coverage", "no command to run (e.g. bareflow coverage generate MODEL)");
  const std::string exe = self_executable("coverage");
  std::vector<Function> fns = functions_of(exe);

  const pid_t child = fork();
  if (child < 0) fail("coverage", std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    std::vector<char*> args{const_cast<char*>(exe.c_str())};
    for (int i = first; i < argc; i++) args.push_back(argv[i]);
    args.push_back(nullptr);
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) {
      std::fprintf(stderr, "bareflow: coverage: ptrace is not permitted here: %s\n", std::strerror(errno));
      _exit(3);
    }
    execv(exe.c_str(), args.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) return 3;  // ptrace refused: said so
    fail("coverage", "the child did not stop at its start");
  }
  ptrace(PTRACE_SETOPTIONS, child, nullptr, PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL);
  const std::string mem_path = "/proc/" + std::to_string(child) + "/mem";
  const int mem = open(mem_path.c_str(), O_RDWR | O_CLOEXEC);
  if (mem < 0) fail(mem_path, std::strerror(errno));
  plant(mem, fns);
  ptrace(PTRACE_CONT, child, nullptr, nullptr);

  int exit_code = 0;
  uint64_t traps = 0;
  for (;;) {
    const pid_t t = waitpid(-1, &status, __WALL);
    if (t < 0) {
      if (errno == EINTR) continue;
      break;  // no children left
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (t == child) exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      continue;
    }
    if (!WIFSTOPPED(status)) continue;
    const int sig = WSTOPSIG(status);
    int deliver = 0;
    if (sig == SIGTRAP && (status >> 16) == 0) {
      user_regs_struct regs;
      if (ptrace(PTRACE_GETREGS, t, nullptr, &regs) == 0) {
        const uint64_t at = regs.rip - 1;
        const auto it = std::lower_bound(fns.begin(), fns.end(), at, [](const Function& f, uint64_t a) { return f.addr < a; });
        if (it != fns.end() && it->addr == at) {
          // Its first hit puts the byte back; another thread trapping on it at once just resumes.
          if (!it->ran) {
            it->ran = true;
            traps++;
            if (!child_memory(mem, at, &it->saved, 1, true)) fail("coverage", "cannot restore the child's text");
          }
          regs.rip = at;
          ptrace(PTRACE_SETREGS, t, nullptr, &regs);
        } else {
          deliver = SIGTRAP;  // not ours
        }
      }
    } else if (sig == SIGTRAP || sig == SIGSTOP) {
      deliver = 0;  // a clone event, a new thread's first stop
    } else {
      deliver = sig;
    }
    ptrace(PTRACE_CONT, t, nullptr, reinterpret_cast<void*>(intptr_t(deliver)));
  }
  close(mem);

  // The report, per origin: functions and their bytes, total and ran.
  uint64_t total[size_t(Origin::Count)] = {}, ran[size_t(Origin::Count)] = {};
  uint64_t bytes[size_t(Origin::Count)] = {}, ran_bytes[size_t(Origin::Count)] = {};
  for (const Function& f : fns) {
    const size_t o = size_t(f.origin);
    total[o]++;
    bytes[o] += f.size;
    if (f.ran) {
      ran[o]++;
      ran_bytes[o] += f.size;
    }
  }
  std::fprintf(stderr, "coverage: functions of %s that ran (%llu traps)\n", exe.c_str(), (unsigned long long)traps);
  std::fprintf(stderr, "%-34s %9s %9s %8s %12s %12s %8s\n", "origin", "functions", "ran", "%", "bytes", "ran bytes", "%");
  uint64_t all = 0, all_ran = 0, all_bytes = 0, all_ran_bytes = 0;
  for (size_t o = 0; o < size_t(Origin::Count); o++) {
    std::fprintf(stderr, "%-34s %9llu %9llu %7.2f%% %12llu %12llu %7.2f%%\n", kOriginNames[o], (unsigned long long)total[o],
                 (unsigned long long)ran[o], total[o] ? 100.0 * double(ran[o]) / double(total[o]) : 0.0,
                 (unsigned long long)bytes[o], (unsigned long long)ran_bytes[o],
                 bytes[o] ? 100.0 * double(ran_bytes[o]) / double(bytes[o]) : 0.0);
    all += total[o];
    all_ran += ran[o];
    all_bytes += bytes[o];
    all_ran_bytes += ran_bytes[o];
  }
  std::fprintf(stderr, "%-34s %9llu %9llu %7.2f%% %12llu %12llu %7.2f%%\n", "all", (unsigned long long)all,
               (unsigned long long)all_ran, 100.0 * double(all_ran) / double(all), (unsigned long long)all_bytes,
               (unsigned long long)all_ran_bytes, 100.0 * double(all_ran_bytes) / double(all_bytes));
  if (!list.empty()) {
    FILE* out = std::fopen(list.c_str(), "w");
    if (!out) fail("--list", list + ": " + std::strerror(errno));
    for (const Function& f : fns)
      if (f.ran) std::fprintf(out, "%s\n", f.name.c_str());
    if (std::fclose(out) != 0) fail("--list", list + ": write failed");
  }
  return exit_code;
}

}  // namespace bf::cli
