#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernel/lib/cmdline.h"

using namespace bf::kern;

namespace {

struct Parsed {
  const char* err;
  std::vector<std::string> argv;
  CmdlineOptions opts;
};

Parsed parse(const char* s, unsigned max_args = 16, size_t cap = 4096) {
  std::vector<char> buf(cap);
  const char* argv[64];
  unsigned argc = 0;
  Parsed p{};
  p.err = parse_cmdline(s, buf.data(), cap, argv, max_args, &argc, &p.opts);
  for (unsigned i = 0; i < argc; ++i) p.argv.emplace_back(argv[i]);
  return p;
}

}  // namespace

TEST(Cmdline, SplitsOptionsAndArgv) {
  auto p = parse("/path/to/bareflow-kernel.bin strace -- bareflow generate /m.bin -i \"Once upon a time\"");
  ASSERT_EQ(p.err, nullptr);
  EXPECT_TRUE(p.opts.strace);
  EXPECT_FALSE(p.opts.nosmep);
  ASSERT_EQ(p.argv.size(), 5u);
  EXPECT_EQ(p.argv[0], "bareflow");
  EXPECT_EQ(p.argv[4], "Once upon a time");
}

TEST(Cmdline, QuotesAndEscapes) {
  auto p = parse("-- a\\ b \"c \\\"d\\\"\" \"\" e\\\\");
  ASSERT_EQ(p.err, nullptr);
  ASSERT_EQ(p.argv.size(), 4u);
  EXPECT_EQ(p.argv[0], "a b");
  EXPECT_EQ(p.argv[1], "c \"d\"");
  EXPECT_EQ(p.argv[2], "");
  EXPECT_EQ(p.argv[3], "e\\");
}

TEST(Cmdline, NoSeparatorMeansNoArgv) {
  auto p = parse("kernel nosmep  ");
  ASSERT_EQ(p.err, nullptr);
  EXPECT_TRUE(p.argv.empty());
  EXPECT_TRUE(p.opts.nosmep);
  EXPECT_FALSE(p.opts.codepages);
  EXPECT_TRUE(parse("kernel codepages -- app").opts.codepages);
  EXPECT_TRUE(parse("").argv.empty());
}

TEST(Cmdline, RejectsBadInput) {
  EXPECT_STREQ(parse("-- a \"b").err, "unterminated quote");
  EXPECT_STREQ(parse("-- a b c", 2).err, "too many arguments");
  EXPECT_STREQ(parse("-- aaaaaaaaaaaaaaaa", 16, 8).err, "command line too long");
}
