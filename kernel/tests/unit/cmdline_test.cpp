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

namespace {

// An argv module as the launcher writes it (kernel/host/launch.cpp).
std::string argv_module(const std::vector<std::string>& args, int extra_argc = 0) {
  std::string strings;
  for (const auto& a : args) strings += a + '\0';
  auto le32 = [](uint32_t v) { return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; };
  return std::string(kArgvMagic, sizeof kArgvMagic) + le32(uint32_t(args.size() + extra_argc)) +
         le32(uint32_t(strings.size())) + strings;
}

Parsed parse_module(const std::string& m, unsigned max_args = 16) {
  const char* argv[64];
  unsigned argc = 0;
  Parsed p{};
  p.err = parse_argv_module(m.data(), m.size(), argv, max_args, &argc);
  for (unsigned i = 0; i < argc; ++i) p.argv.emplace_back(argv[i]);
  return p;
}

}  // namespace

TEST(Cmdline, ArgvModuleIsByteExact) {
  // What the command line cannot carry: quotes, backslashes, $, newlines, empty words, 5,000 bytes.
  const std::vector<std::string> args = {"bareflow", "-i", "say \"hi\" \\ $HOME\n;'x'", "", std::string(5000, 'a')};
  const std::string m = argv_module(args);
  EXPECT_TRUE(is_argv_module(m.data(), m.size()));
  auto p = parse_module(m);
  ASSERT_EQ(p.err, nullptr);
  EXPECT_EQ(p.argv, args);
}

TEST(Cmdline, ArgvModuleRejectsBadInput) {
  const std::string good = argv_module({"app", "x"});
  EXPECT_FALSE(is_argv_module("\x7f" "BFARGV", 7));
  EXPECT_FALSE(is_argv_module("not argv module", 15));
  EXPECT_STREQ(parse_module(good.substr(0, 12)).err, "argv module: truncated header");
  EXPECT_STREQ(parse_module(good.substr(0, good.size() - 1)).err, "argv module: its size disagrees with its header");
  EXPECT_STREQ(parse_module(good + "y").err, "argv module: its size disagrees with its header");
  EXPECT_STREQ(parse_module(argv_module({})).err, "argv module: no arguments (argv0 is needed)");
  EXPECT_STREQ(parse_module(argv_module({"a", "b", "c"}), 2).err, "argv module: too many arguments");
  EXPECT_STREQ(parse_module(argv_module({"a", "b"}, 1)).err, "argv module: fewer strings than its header says");
  EXPECT_STREQ(parse_module(argv_module({"a", "b"}, -1)).err, "argv module: more strings than its header says");
  std::string unterminated = argv_module({"a", "bc"});
  unterminated.back() = 'd';
  EXPECT_STREQ(parse_module(unterminated).err, "argv module: the last string is not terminated");
}
