// Files that must not outlive the process unless kept: bench's synthetic models, a half-written
// bench_synth_model output. A TempFile unlinks its path when it goes out of scope (a normal return
// or an exception) and, from a signal handler, when SIGINT, SIGTERM or SIGHUP ends the process.
#pragma once

#include <string>

namespace bf::bench {

class TempFile {
 public:
  // Registers `path` (before the file is created, so no moment leaves it behind). Throws bf::Error
  // if the path is too long or too many files are registered at once.
  explicit TempFile(std::string path);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }
  // Unlinks the file now (a mapped model keeps its bytes).
  void remove();
  // Leaves the file in place from now on.
  void keep();

 private:
  std::string path_;
  int slot_;  // in the signal handler's table; -1 once removed or kept
};

}  // namespace bf::bench
