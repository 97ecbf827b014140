// The one error type of the engine: a message naming the file (or flag) and the problem.
// The CLI prints it as a single line and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace bf {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws Error("<where>: <what>").
[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw Error(where + ": " + what);
}

}  // namespace bf
