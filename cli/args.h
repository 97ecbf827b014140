// Small helpers for the subcommands' flag parsing: every bad value throws bf::Error naming the flag.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace bf::cli {

// Walks argv; `value()` consumes the argument of the current flag.
struct Args {
  int argc;
  char** argv;
  int i = 1;

  bool done() const { return i >= argc; }
  std::string next() { return argv[i++]; }
  std::string value(const std::string& flag) {
    if (i >= argc) fail(flag, "missing value");
    return argv[i++];
  }
};

// True when `path` names a regular file (its size in *size when asked).
inline bool is_file(const std::string& path, off_t* size = nullptr) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (size) *size = st.st_size;
  return true;
}

inline double parse_double(const std::string& flag, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    fail(flag, "'" + s + "' is not a number");
  return v;
}

inline long long parse_int(const std::string& flag, const std::string& s, long long lo, long long hi) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) fail(flag, "'" + s + "' is not an integer");
  if (v < lo || v > hi)
    fail(flag, std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

inline uint64_t parse_u64(const std::string& flag, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  if (s.empty() || s[0] == '-') fail(flag, "'" + s + "' is not a non-negative integer");
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE) fail(flag, "'" + s + "' is not a non-negative integer");
  return v;
}

}  // namespace bf::cli
