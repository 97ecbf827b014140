// libFuzzer target: any bytes as a store file. Opening either refuses with an Error or yields a
// store whose records decode or are refused; after a commit the store must read back clean,
// with what was put in it.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/error.h"
#include "state/records.h"
#include "state/store.h"

namespace {

struct MemFile {
  int fd;
  std::string path;
  explicit MemFile(const uint8_t* data, size_t size) : fd(memfd_create("store", 0)) {
    if (fd < 0 || (size && write(fd, data, size) != ssize_t(size))) std::abort();
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  ~MemFile() { close(fd); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bf::state;
  MemFile f(data, size);
  try {
    Store s = Store::open(f.path);
    for (const Entry* e : s.all(Kind::Model)) {
      try {
        (void)decode_model_state(e->value, "fuzz");
      } catch (const bf::Error&) {
      }
    }
    for (const Entry* e : s.all(Kind::Run)) {
      try {
        (void)decode_run(e->value, "fuzz");
      } catch (const bf::Error&) {
      }
    }
    s.put(Kind::Run, "fuzz", {1, 2, 3});
    s.commit();
    Store t = Store::open(f.path);
    if (!t.problems().empty()) {
      std::fprintf(stderr, "after a commit: %s\n", t.problems()[0].c_str());
      std::abort();
    }
    const Entry* e = t.find(Kind::Run, "fuzz");
    if (!e || e->value != std::vector<uint8_t>{1, 2, 3}) std::abort();
  } catch (const bf::Error&) {
    // refused with a message: not ours, a newer format
  }
  return 0;
}
