#include "kernel/app/stack.h"

namespace bf::kern {
namespace {

struct Writer {
  uint8_t* mem;
  uint64_t size, top_va;
  uint64_t sp;  // current lowest used user address
  bool ok = true;
  uint64_t push_bytes(const void* p, uint64_t n) {
    if (!ok || n > sp - (top_va - size)) return ok = false, 0;
    sp -= n;
    __builtin_memcpy(mem + (sp - (top_va - size)), p, n);
    return sp;
  }
  uint64_t push_str(const char* s) {
    uint64_t n = 0;
    while (s[n] && n < (1u << 20)) ++n;
    return push_bytes(s, n + 1);
  }
  void put64(uint64_t va, uint64_t v) { __builtin_memcpy(mem + (va - (top_va - size)), &v, 8); }
};

}  // namespace

uint64_t build_initial_stack(uint8_t* mem, uint64_t size, uint64_t top_va, const StackSpec& spec) {
  if (spec.argc > kMaxArgs || spec.envc > kMaxEnv || spec.nauxv > 64) return 0;
  Writer w{mem, size, top_va, top_va};
  const uint64_t execfn = w.push_str(spec.argc ? spec.argv[0] : "");
  const uint64_t platform = w.push_str(spec.platform);
  const uint64_t random = w.push_bytes(spec.random, 16);
  uint64_t argv_va[kMaxArgs], envp_va[kMaxEnv];
  for (unsigned i = 0; i < spec.argc; ++i) argv_va[i] = w.push_str(spec.argv[i]);
  for (unsigned i = 0; i < spec.envc; ++i) envp_va[i] = w.push_str(spec.envp[i]);
  if (!w.ok) return 0;
  const uint64_t nwords = 1 + (spec.argc + 1) + (spec.envc + 1) + 2 * (spec.nauxv + 4);
  const uint64_t low = top_va - size;
  if (w.sp - low < nwords * 8 + 16) return 0;
  const uint64_t sp = (w.sp - nwords * 8) & ~15ull;
  uint64_t p = sp;
  w.put64(p, spec.argc), p += 8;
  for (unsigned i = 0; i < spec.argc; ++i) w.put64(p, argv_va[i]), p += 8;
  w.put64(p, 0), p += 8;
  for (unsigned i = 0; i < spec.envc; ++i) w.put64(p, envp_va[i]), p += 8;
  w.put64(p, 0), p += 8;
  for (unsigned i = 0; i < spec.nauxv; ++i) w.put64(p, spec.auxv[2 * i]), w.put64(p + 8, spec.auxv[2 * i + 1]), p += 16;
  const uint64_t extra[] = {kAtRandom, random, kAtPlatform, platform, kAtExecfn, execfn, kAtNull, 0};
  for (unsigned i = 0; i < 8; i += 2) w.put64(p, extra[i]), w.put64(p + 8, extra[i + 1]), p += 16;
  return sp;
}

}  // namespace bf::kern
