#include "engine/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "engine/error.h"

namespace bf {
namespace {

// Live mappings, read by the SIGBUS handler. A slot is published by storing `start` last (release)
// and retired by clearing `start` first, so the handler never reads a half-written slot. The
// message is composed when the file is mapped: the handler only compares and writes.
struct Slot {
  std::atomic<uintptr_t> start{0};
  size_t size = 0;
  char message[1024];
  size_t message_len = 0;
};
constexpr int kSlots = 16;
Slot g_slots[kSlots];
std::mutex g_slots_mutex;  // serializes writers only
struct sigaction g_previous_sigbus;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t start = s.start.load(std::memory_order_acquire);
    if (start != 0 && addr >= start && addr - start < s.size) {
      // Only async-signal-safe calls from here on.
      ssize_t unused = ::write(STDERR_FILENO, s.message, s.message_len);
      (void)unused;
      _exit(2);
    }
  }
  // Not ours: behave as if this handler had never been installed.
  if (g_previous_sigbus.sa_flags & SA_SIGINFO) {
    if (g_previous_sigbus.sa_sigaction) return g_previous_sigbus.sa_sigaction(sig, info, context);
  } else if (g_previous_sigbus.sa_handler != SIG_DFL && g_previous_sigbus.sa_handler != SIG_IGN) {
    return g_previous_sigbus.sa_handler(sig);
  }
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

int register_mapping(const uint8_t* data, size_t size, const std::string& path) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous_sigbus);
  });
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  for (int i = 0; i < kSlots; i++) {
    Slot& s = g_slots[i];
    if (s.start.load(std::memory_order_relaxed) != 0) continue;
    std::string m = printable(path);
    if (m.size() > 700) m = m.substr(0, 700) + "...";
    m = "bareflow: " + m + ": changed while in use (truncated by another process while mapped)\n";
    std::memcpy(s.message, m.data(), m.size());
    s.message_len = m.size();
    s.size = size;
    s.start.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return i;
  }
  return -1;  // more live mappings than slots: that file keeps the default SIGBUS behaviour
}

void unregister_mapping(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  g_slots[slot].start.store(0, std::memory_order_release);
}

}  // namespace

void MappedFile::release() {
  unregister_mapping(slot_);
  if (owned_ && data_) munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
      owned_(std::exchange(o.owned_, false)), slot_(std::exchange(o.slot_, -1)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    owned_ = std::exchange(o.owned_, false);
    slot_ = std::exchange(o.slot_, -1);
  }
  return *this;
}

MappedFile MappedFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It is
  // cleared again once fstat has shown a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    fail(path, "file is empty");
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  void* p = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(e));
  MappedFile f;
  f.data_ = static_cast<const uint8_t*>(p);
  f.size_ = size_t(st.st_size);
  f.owned_ = true;
  f.slot_ = register_mapping(f.data_, f.size_, path);
  return f;
}

void MappedFile::drop_pages(const void* p, size_t n) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(data_);
  if (!owned_ || a < base || a + n > base + size_) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (a + page - 1) / page * page, hi = (a + n) / page * page;
  if (lo < hi) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

AnonymousMemory::~AnonymousMemory() {
  if (data_) munmap(data_, size_);
}

AnonymousMemory::AnonymousMemory(AnonymousMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AnonymousMemory& AnonymousMemory::operator=(AnonymousMemory&& o) noexcept {
  if (this != &o) {
    if (data_) munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

AnonymousMemory AnonymousMemory::allocate(size_t size) {
  AnonymousMemory m;
  if (size == 0) return m;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return m;
  madvise(p, size, MADV_HUGEPAGE);
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = size;
  return m;
}

MappedFile MappedFile::borrow(const void* data, size_t size) {
  MappedFile f;
  f.data_ = static_cast<const uint8_t*>(data);
  f.size_ = size;
  return f;
}

}  // namespace bf
