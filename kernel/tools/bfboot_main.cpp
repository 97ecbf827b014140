// bfboot: `bareflow boot` as a stand-alone tool, so the kernel's boot tests can run any static
// program (--app) even while the engine does not build. Every argument after "--" is text: files
// for the guest are named with --module.
#include <cstdio>

#include "kernel/host/launch.h"

int main(int argc, char** argv) {
  bf::boot::Options o;
  bool help = false;
  const std::string err = bf::boot::parse_flags(argc, argv, &o, &help);
  if (!err.empty()) {
    std::fprintf(stderr, "bfboot: %s\n", err.c_str());
    return 2;
  }
  if (help) {
    std::fputs(bf::boot::kUsage, stdout);
    return 0;
  }
  return bf::boot::launch(o, "bfboot");
}
