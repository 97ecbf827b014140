#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernel/app/stack.h"

using namespace bf::kern;

TEST(InitialStack, LayoutMatchesTheSysVAbi) {
  std::vector<uint8_t> mem(64 * 1024);
  const uint64_t top = 0x7ff000000000;
  const char* argv[] = {"bareflow", "generate", "Once upon a time"};
  const char* envp[] = {"HOME=/"};
  const uint64_t aux[] = {kAtPagesz, 4096, kAtEntry, 0x401000};
  StackSpec s{argv, 3, envp, 1, aux, 2, "x86_64", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
  const uint64_t sp = build_initial_stack(mem.data(), mem.size(), top, s);
  ASSERT_NE(sp, 0u);
  EXPECT_EQ(sp % 16, 0u);
  const uint64_t low = top - mem.size();
  auto word = [&](uint64_t va) {
    uint64_t v;
    std::memcpy(&v, mem.data() + (va - low), 8);
    return v;
  };
  auto str = [&](uint64_t va) { return std::string(reinterpret_cast<const char*>(mem.data() + (va - low))); };
  EXPECT_EQ(word(sp), 3u);
  EXPECT_EQ(str(word(sp + 8)), "bareflow");
  EXPECT_EQ(str(word(sp + 24)), "Once upon a time");
  EXPECT_EQ(word(sp + 32), 0u);
  EXPECT_EQ(str(word(sp + 40)), "HOME=/");
  EXPECT_EQ(word(sp + 48), 0u);
  uint64_t p = sp + 56;
  bool saw_random = false, saw_entry = false, saw_null = false;
  for (int i = 0; i < 16 && !saw_null; ++i, p += 16) {
    const uint64_t type = word(p), val = word(p + 8);
    if (type == kAtRandom) {
      saw_random = true;
      EXPECT_EQ(mem[val - low], 1);
      EXPECT_EQ(mem[val - low + 15], 16);
    }
    if (type == kAtEntry) saw_entry = val == 0x401000;
    if (type == kAtPlatform) {
      EXPECT_EQ(str(val), "x86_64");
    }
    if (type == kAtNull) saw_null = true;
  }
  EXPECT_TRUE(saw_random);
  EXPECT_TRUE(saw_entry);
  EXPECT_TRUE(saw_null);
}

TEST(InitialStack, RefusesWhatDoesNotFit) {
  std::vector<uint8_t> mem(128);
  std::string big(200, 'a');
  const char* argv[] = {big.c_str()};
  StackSpec s{argv, 1, nullptr, 0, nullptr, 0, "x86_64", {}};
  EXPECT_EQ(build_initial_stack(mem.data(), mem.size(), 0x7ff000000000, s), 0u);
}
