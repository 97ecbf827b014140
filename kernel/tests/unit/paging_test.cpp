#include <gtest/gtest.h>

#include "kernel/lib/layout.h"
#include "kernel/tests/unit/arena.h"

using namespace bf::kern;

TEST(Paging, Maps4KPagesAndTranslates) {
  Arena a;
  PageTables pt = make_tables(a);
  ASSERT_TRUE(pt.map(0x400000, 0x5000000, 3 * 4096, kPteU | kPteW));
  PtMapping m;
  ASSERT_TRUE(pt.translate(0x401234, &m));
  EXPECT_EQ(m.phys, 0x5001234u);
  EXPECT_EQ(m.page_size, 4096u);
  EXPECT_TRUE(m.flags & kPteU);
  EXPECT_TRUE(m.flags & kPteW);
  EXPECT_FALSE(m.flags & kPteNx);
  EXPECT_FALSE(pt.translate(0x403000, &m));
  EXPECT_FALSE(pt.translate(0x3ff000, &m));
}

// The CPU sets a leaf entry's accessed bit on use; translate() reports it (code-page tracking).
TEST(Paging, ReportsTheLeafAccessedBit) {
  Arena a;
  PageTables pt = make_tables(a);
  ASSERT_TRUE(pt.map(0x400000, 0x5000000, 2 * 4096, kPteU, false));
  PtMapping m;
  ASSERT_TRUE(pt.translate(0x400000, &m));
  EXPECT_FALSE(m.accessed) << "fresh mappings start unused";
  // Walk by hand to the PT entry of the second page and set A as the CPU would.
  uint64_t* t = static_cast<uint64_t*>(Arena::to_ptr(&a, pt.root()));
  for (int level = 4; level > 1; --level)
    t = static_cast<uint64_t*>(Arena::to_ptr(&a, t[(0x401000ull >> (12 + 9 * (level - 1))) & 511] & kPteAddr));
  t[(0x401000 >> 12) & 511] |= kPteA;
  ASSERT_TRUE(pt.translate(0x401000, &m));
  EXPECT_TRUE(m.accessed);
  ASSERT_TRUE(pt.translate(0x400000, &m));
  EXPECT_FALSE(m.accessed);
}

TEST(Paging, UsesLargePagesWhenAligned) {
  Arena a;
  PageTables pt = make_tables(a);
  const unsigned before = a.used();
  ASSERT_TRUE(pt.map(0x40000000, 0x80000000, 64ull << 20, kPteU | kPteNx));
  // PDPT + PD only: 32 large pages, no page tables.
  EXPECT_EQ(a.used() - before, 2u);
  PtMapping m;
  ASSERT_TRUE(pt.translate(0x40000000 + (5ull << 20) + 17, &m));
  EXPECT_EQ(m.page_size, 2ull << 20);
  EXPECT_EQ(m.phys, 0x80000000 + (5ull << 20) + 17);
  EXPECT_TRUE(m.flags & kPteNx);
  EXPECT_FALSE(m.flags & kPteW);
}

TEST(Paging, MixesPageSizesAtUnalignedEdges) {
  Arena a;
  PageTables pt = make_tables(a);
  // Starts 4 KiB before a 2 MiB boundary: one small page, then large pages, then small ones.
  ASSERT_TRUE(pt.map(0x1ff000, 0x3ff000, 4096 + (4ull << 20) + 8192, kPteU));
  PtMapping m;
  ASSERT_TRUE(pt.translate(0x1ff000, &m));
  EXPECT_EQ(m.page_size, 4096u);
  ASSERT_TRUE(pt.translate(0x200000, &m));
  EXPECT_EQ(m.page_size, 2ull << 20);
  EXPECT_EQ(m.phys, 0x400000u);
  ASSERT_TRUE(pt.translate(0x601000, &m));
  EXPECT_EQ(m.page_size, 4096u);
  EXPECT_EQ(m.phys, 0x801000u);
}

TEST(Paging, UnmapSplitsLargePage) {
  Arena a;
  PageTables pt = make_tables(a);
  ASSERT_TRUE(pt.map(0x200000, 0x600000, 2ull << 20, kPteU | kPteW));
  ASSERT_TRUE(pt.unmap(0x201000, 4096));
  PtMapping m;
  EXPECT_FALSE(pt.translate(0x201000, &m));
  ASSERT_TRUE(pt.translate(0x200000, &m));
  EXPECT_EQ(m.page_size, 4096u);
  EXPECT_EQ(m.phys, 0x600000u);
  ASSERT_TRUE(pt.translate(0x3ff000, &m));
  EXPECT_EQ(m.phys, 0x7ff000u);
  EXPECT_TRUE(m.flags & kPteW);
}

TEST(Paging, ProtectChangesFlagsOfSubrange) {
  Arena a;
  PageTables pt = make_tables(a);
  ASSERT_TRUE(pt.map(0x400000, 0x400000, 4ull << 20, kPteU | kPteW | kPteNx));
  ASSERT_TRUE(pt.protect(0x402000, 2 * 4096, kPteU));  // read + exec
  PtMapping m;
  ASSERT_TRUE(pt.translate(0x402000, &m));
  EXPECT_FALSE(m.flags & kPteW);
  EXPECT_FALSE(m.flags & kPteNx);
  ASSERT_TRUE(pt.translate(0x404000, &m));
  EXPECT_TRUE(m.flags & kPteW);
  ASSERT_TRUE(pt.translate(0x600000, &m));
  EXPECT_EQ(m.page_size, 2ull << 20);  // the untouched large page stays large
}

TEST(Paging, RejectsBadArguments) {
  Arena a;
  PageTables pt = make_tables(a);
  EXPECT_FALSE(pt.map(0x400001, 0x1000, 4096, kPteU));            // unaligned
  EXPECT_FALSE(pt.map(0x400000, 0x1000, 4096, kPteP | kPtePs));    // not a leaf flag
  EXPECT_FALSE(pt.map(0x00007ffffffff000, 0x1000, 8192, kPteU));  // crosses into non-canonical
  EXPECT_FALSE(pt.map(~0ull - 4095, 0x1000, 8192, kPteU));         // wraps
}

TEST(Paging, FailsCleanlyWhenTableFramesRunOut) {
  Arena a(3);  // root + 2 frames: not enough for PDPT + PD + PT
  PageTables pt = make_tables(a);
  EXPECT_FALSE(pt.map(0x400000, 0x1000, 4096, kPteU));
}

TEST(Paging, KernelDirectMapIsSupervisorOnly) {
  Arena a;
  PageTables pt = make_tables(a);
  ASSERT_TRUE(pt.map(kDirectMapBase, 0, 16ull << 20, kPteW | kPteNx | kPteG));
  PtMapping m;
  ASSERT_TRUE(pt.translate(kDirectMapBase + 0x123456, &m));
  EXPECT_FALSE(m.flags & kPteU);
  EXPECT_EQ(m.phys, 0x123456u);
}
