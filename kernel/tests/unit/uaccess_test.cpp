#include <gtest/gtest.h>

#include "kernel/lib/layout.h"
#include "kernel/syscall/uaccess.h"
#include "kernel/tests/unit/arena.h"

using namespace bf::kern;

namespace {

struct UaccessTest : ::testing::Test {
  Arena a{512};
  PageTables pt = make_tables(a);
  void SetUp() override {
    ASSERT_TRUE(pt.map(0x400000, 0x400000, 0x2000, kPteU));                 // read-only user
    ASSERT_TRUE(pt.map(0x402000, 0x402000, 0x2000, kPteU | kPteW));         // writable user
    ASSERT_TRUE(pt.map(0x600000, 0x600000, 0x1000, kPteW));                 // supervisor only
    ASSERT_TRUE(pt.map(0x800000, 0x800000, 4ull << 20, kPteU | kPteW));     // large pages
  }
};

}  // namespace

TEST_F(UaccessTest, AcceptsMappedUserRanges) {
  EXPECT_TRUE(user_range_ok(pt, 0x400000, 0x2000, Access::kRead));
  EXPECT_TRUE(user_range_ok(pt, 0x401ff0, 0x20, Access::kRead));  // spans two mappings
  EXPECT_TRUE(user_range_ok(pt, 0x402000, 0x2000, Access::kWrite));
  EXPECT_TRUE(user_range_ok(pt, 0x800000, 4ull << 20, Access::kWrite));
  EXPECT_TRUE(user_range_ok(pt, 0, 0, Access::kWrite));  // empty is always fine
}

TEST_F(UaccessTest, RejectsBadPointers) {
  EXPECT_FALSE(user_range_ok(pt, 0, 1, Access::kRead));                       // null
  EXPECT_FALSE(user_range_ok(pt, 0x400000, 0x2000, Access::kWrite));        // read-only
  EXPECT_FALSE(user_range_ok(pt, 0x403ff0, 0x20, Access::kRead));             // runs off the end
  EXPECT_FALSE(user_range_ok(pt, 0x600000, 16, Access::kRead));               // supervisor page
  EXPECT_FALSE(user_range_ok(pt, kDirectMapBase, 16, Access::kRead));         // kernel half
  EXPECT_FALSE(user_range_ok(pt, 0x400000, ~0ull, Access::kRead));            // overflow
  EXPECT_FALSE(user_range_ok(pt, kUserTop - 8, 16, Access::kRead));           // past the window
  EXPECT_FALSE(user_range_ok(pt, 0x1000, 16, Access::kRead));                 // below the window
}

TEST(UaccessStrings, MeasuresStringsThroughTheTables) {
  // Map the host pages holding a test string at their own addresses.
  alignas(4096) static char page[3 * 4096];
  Arena a{64};
  PageTables pt = make_tables(a);
  const uint64_t base = reinterpret_cast<uint64_t>(page);
  ASSERT_TRUE(pt.map(base, base, 2 * 4096, kPteU));
  std::strcpy(page + 10, "/stories260K.bin");
  EXPECT_EQ(user_strnlen(pt, base + 10, 256), 16);
  EXPECT_EQ(user_strnlen(pt, base + 10, 8), -1);  // too long for the buffer
  // A string that runs into the unmapped third page is -1, without touching that page.
  std::memset(page + 4096, 'x', 4096);
  EXPECT_EQ(user_strnlen(pt, base + 4096, 1 << 20), -1);
  EXPECT_EQ(user_strnlen(pt, 0, 16), -1);
}
