#include "bench/temp_files.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "engine/error.h"

namespace bf::bench {
namespace {

// The handler may only read memory and call async-signal-safe functions (unlink, sigaction,
// raise): a fixed table of paths, each published by its flag after the path is written.
constexpr int kSlots = 8;
constexpr size_t kPathMax = 4096;
struct Slot {
  std::atomic<bool> used{false};
  char path[kPathMax];
};
Slot g_slots[kSlots];
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler reads these flags");

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

void on_signal(int sig) {
  for (Slot& s : g_slots)
    if (s.used.load(std::memory_order_acquire)) unlink(s.path);
  // SA_RESETHAND restored the default action: re-raised, the signal ends the process as it would
  // have (exit status 128 + sig) once this handler returns.
  raise(sig);
}

void install_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : kSignals) {
      struct sigaction old {};
      sigaction(sig, nullptr, &old);
      if (old.sa_handler == SIG_IGN) continue;  // e.g. SIGHUP under nohup: stays ignored
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      for (int other : kSignals) sigaddset(&sa.sa_mask, other);  // one handler run at a time
      sa.sa_flags = SA_RESETHAND;
      sigaction(sig, &sa, nullptr);
    }
  });
}

std::mutex g_mutex;  // slot allocation (not the handler, which only reads)

}  // namespace

TempFile::TempFile(std::string path) : path_(std::move(path)), slot_(-1) {
  if (path_.size() >= kPathMax) fail(path_, "path too long for a temporary file");
  install_handlers();
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kSlots; i++) {
    if (g_slots[i].used.load(std::memory_order_relaxed)) continue;
    std::memcpy(g_slots[i].path, path_.c_str(), path_.size() + 1);
    g_slots[i].used.store(true, std::memory_order_release);
    slot_ = i;
    return;
  }
  fail(path_, "too many temporary files at once");
}

TempFile::~TempFile() { remove(); }

void TempFile::remove() {
  if (slot_ < 0) return;
  unlink(path_.c_str());  // before the slot is freed: a signal in between unlinks it again, harmlessly
  keep();
}

void TempFile::keep() {
  if (slot_ < 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_slots[slot_].used.store(false, std::memory_order_release);
  slot_ = -1;
}

}  // namespace bf::bench
