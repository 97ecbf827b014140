// The System V x86-64 initial process stack: argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL,
// then the strings and AT_RANDOM's 16 bytes above. Host-testable: writes into a caller buffer that
// stands for the user stack [top_va - size, top_va).
#pragma once
#include <stdint.h>

namespace bf::kern {

constexpr uint64_t kAtNull = 0, kAtPhdr = 3, kAtPhent = 4, kAtPhnum = 5, kAtPagesz = 6, kAtBase = 7,
                   kAtFlags = 8, kAtEntry = 9, kAtUid = 11, kAtEuid = 12, kAtGid = 13, kAtEgid = 14,
                   kAtPlatform = 15, kAtHwcap = 16, kAtClktck = 17, kAtSecure = 23, kAtRandom = 25,
                   kAtHwcap2 = 26, kAtExecfn = 31;

constexpr unsigned kMaxArgs = 256, kMaxEnv = 32;

struct StackSpec {
  const char* const* argv;
  unsigned argc;
  const char* const* envp;
  unsigned envc;
  const uint64_t* auxv;  // (type, value) pairs, without AT_RANDOM/AT_PLATFORM/AT_EXECFN/AT_NULL
  unsigned nauxv;        // number of pairs
  const char* platform;
  uint8_t random[16];
};

// Returns the initial user rsp (16-byte aligned, pointing at argc), or 0 if it does not fit.
uint64_t build_initial_stack(uint8_t* mem, uint64_t size, uint64_t top_va, const StackSpec& spec);

}  // namespace bf::kern
