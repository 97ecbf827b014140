// The store's promises: what was committed is read back; a crash at any I/O operation (stopped,
// torn, or with unflushed writes lost) leaves the previous or the new generation, never a mixture;
// damage is reported and survived; what is not ours is never overwritten.
#include "state/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "engine/error.h"

namespace bf::state {
namespace {

using Content = std::map<std::pair<int, std::string>, std::string>;

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

Content content(const Store& s) {
  Content c;
  for (Kind k : {Kind::Model, Kind::Variant, Kind::Run})
    for (const Entry* e : s.all(k)) c[{int(k), e->key}] = std::string(e->value.begin(), e->value.end());
  return c;
}

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_file(const std::string& p, const std::string& data) { std::ofstream(p, std::ios::binary) << data; }

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bf-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/state.bfs";
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string dir_, path_;
};

// A run of commits that exercises appends, overwrites, erases, a compaction to the front and one
// after the log. Returns the content after each commit (index 0: before the first); `done`
// counts the commits that returned (a simulated crash is thrown from the next one).
std::vector<Content> scenario(const std::string& path, const Options& o, size_t* done = nullptr) {
  std::vector<Content> after{{}};
  Store s = Store::open(path, o);
  auto commit = [&] {
    s.commit();
    after.push_back(content(s));
    if (done) ++*done;
  };
  s.put(Kind::Model, "m1", bytes("profile one"));
  s.put(Kind::Variant, "v1", bytes(std::string(3000, 'x')));
  commit();
  s.put(Kind::Model, "m1", bytes("profile two"));
  s.put(Kind::Run, "r1", bytes("run 1"));
  commit();
  s.erase(Kind::Variant, "v1");
  s.put(Kind::Variant, "v2", bytes(std::string(70000, 'y')));
  commit();
  for (int i = 0; i < 3; i++) s.put(Kind::Variant, "v2", bytes(std::string(70000, char('a' + i))));
  commit();  // dead bytes now outweigh live ones: compacted
  s.put(Kind::Run, "r2", bytes("run 2"));
  commit();
  return after;
}

TEST_F(StoreTest, CommittedRecordsReadBack) {
  const std::vector<Content> want = scenario(path_, {});
  Store s = Store::open(path_);
  EXPECT_EQ(content(s), want.back());
  EXPECT_TRUE(s.problems().empty());
  EXPECT_EQ(s.generation(), want.size() - 1);
  ASSERT_NE(s.find(Kind::Variant, "v2"), nullptr);
  EXPECT_EQ(s.find(Kind::Variant, "v2")->value.size(), 70000u);
  EXPECT_EQ(s.find(Kind::Variant, "v1"), nullptr);
  // Compaction keeps the file near the live size (the 70 KB value was rewritten several times):
  // a log compacted behind the old one moves to the front at the next commit.
  s.put(Kind::Run, "r3", bytes("run 3"));
  s.commit();
  EXPECT_LT(s.file_bytes(), s.live_bytes() + 8192 + 4096);
}

TEST_F(StoreTest, ManyCommitsStayBounded) {
  for (int i = 0; i < 200; i++) {
    Store s = Store::open(path_);
    s.put(Kind::Model, "m", bytes(std::string(1000, char('a' + i % 26))));
    s.put(Kind::Run, "run" + std::to_string(i % 5), bytes("x"));
    s.commit();
  }
  Store s = Store::open(path_);
  EXPECT_EQ(s.generation(), 200u);
  EXPECT_EQ(s.all(Kind::Run).size(), 5u);
  EXPECT_LT(s.file_bytes(), 8192u + 3 * (64u << 10));
}

// Every operation of the scenario, in every crash mode: the store afterwards holds exactly the
// content before or after the interrupted commit, reports no damage, and takes new commits.
TEST_F(StoreTest, CrashAtEveryOperationLeavesOldOrNewGeneration) {
  const std::vector<Content> want = scenario(dir_ + "/reference.bfs", {});
  int trials = 0;
  for (FaultPlan::Mode mode : {FaultPlan::Mode::Stop, FaultPlan::Mode::Tear, FaultPlan::Mode::LoseUnflushed,
                              FaultPlan::Mode::Reorder}) {
    for (uint64_t op = 1;; op++) {
      unlink(path_.c_str());
      bool crashed = false;
      size_t done = 0;
      try {
        Options o;
        o.fault = {mode, op};
        ASSERT_EQ(scenario(path_, o, &done), want);
      } catch (const SimulatedCrash&) {
        crashed = true;
      }
      if (!crashed) break;  // op is past the scenario's last operation
      trials++;
      Store r = Store::open(path_);
      const Content c = content(r);
      EXPECT_TRUE(c == want[done] || c == want[done + 1])
          << "mode " << int(mode) << " op " << op << ": neither generation " << done << " nor " << done + 1;
      EXPECT_TRUE(r.problems().empty()) << "mode " << int(mode) << " op " << op << ": " << r.problems()[0];
      r.put(Kind::Run, "after", bytes("crash"));
      r.commit();
      Store again = Store::open(path_);
      EXPECT_NE(again.find(Kind::Run, "after"), nullptr);
      EXPECT_TRUE(again.problems().empty());
    }
  }
  EXPECT_GT(trials, 30);
}

TEST_F(StoreTest, FlippedByteInAnyRecordIsReportedAndSurvived) {
  {
    Store s = Store::open(path_);
    s.put(Kind::Model, "a", bytes("alpha"));
    s.put(Kind::Model, "b", bytes("bravo"));
    s.put(Kind::Model, "c", bytes("charlie"));
    s.commit();
  }
  const std::string good = read_file(path_);
  ASSERT_GT(good.size(), 8192u);
  for (size_t at = 8192; at < good.size(); at++) {
    std::string bad = good;
    bad[at] ^= 0x10;
    write_file(path_, bad);
    Store s = Store::open(path_);
    ASSERT_FALSE(s.problems().empty()) << "flip at " << at << " went unnoticed";
    EXPECT_LE(content(s).size(), 2u);  // the damaged record is dropped, the others kept
    EXPECT_GE(content(s).size(), 2u - (at % 8 == 0 ? 1 : 0)) << "flip at " << at;
    s.commit();  // rewrites a clean log
    Store t = Store::open(path_);
    EXPECT_TRUE(t.problems().empty());
    EXPECT_EQ(content(t), content(s));
  }
}

TEST_F(StoreTest, FlippedByteInASuperblockFallsBackToTheOtherGeneration) {
  Content first;
  {
    Store s = Store::open(path_);
    s.put(Kind::Model, "a", bytes("one"));
    s.commit();
    first = content(s);
    s.put(Kind::Model, "a", bytes("two"));
    s.commit();  // generation 2, in slot B (4096)
  }
  std::string bad = read_file(path_);
  bad[4096 + 20] ^= 1;  // slot B's generation field
  write_file(path_, bad);
  Store s = Store::open(path_);
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(content(s), first);
}

TEST_F(StoreTest, TruncationAtEveryRecordBoundaryKeepsThePrefix) {
  std::vector<size_t> ends;  // the file's end after each commit: a record boundary
  {
    Store s = Store::open(path_);
    for (int i = 0; i < 6; i++) {
      s.put(Kind::Run, "r" + std::to_string(i), bytes(std::string(100 + i, 'r')));
      s.commit();
      ends.push_back(size_t(s.file_bytes()));
    }
  }
  const std::string good = read_file(path_);
  ASSERT_EQ(good.size(), ends.back());
  // (cut, records that must survive): every boundary before the last, inside records, inside
  // the header region.
  std::vector<std::pair<size_t, size_t>> cuts;
  for (size_t i = 0; i + 1 < ends.size(); i++) {
    cuts.push_back({ends[i], i + 1});
    cuts.push_back({ends[i] + 50, i + 1});
  }
  for (size_t n : {8192, 8000, 4096, 100}) cuts.push_back({n, 0});
  for (const auto& [n, keep] : cuts) {
    write_file(path_, good.substr(0, n));
    Store s = Store::open(path_);
    EXPECT_FALSE(s.problems().empty()) << "cut at " << n;
    EXPECT_EQ(s.all(Kind::Run).size(), keep) << "cut at " << n;
    s.put(Kind::Run, "after", bytes("x"));
    s.commit();
    Store t = Store::open(path_);
    EXPECT_TRUE(t.problems().empty()) << "cut at " << n;
    EXPECT_EQ(t.all(Kind::Run).size(), keep + 1) << "cut at " << n;
  }
}

TEST_F(StoreTest, RefusesWhatIsNotOurs) {
  write_file(path_, "a notes file the user keeps here\n");
  EXPECT_THROW(
      {
        try {
          Store::open(path_);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("not a BareFlow state store"), std::string::npos);
          throw;
        }
      },
      Error);
  EXPECT_EQ(read_file(path_), "a notes file the user keeps here\n");

  EXPECT_THROW(Store::open(dir_), Error);  // a directory
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_THROW(Store::open(fifo), Error);  // refused at once, not blocked in open()
}

TEST_F(StoreTest, RefusesANewerFormat) {
  {
    Store s = Store::open(path_);
    s.put(Kind::Model, "a", bytes("one"));
    s.commit();
  }
  std::string f = read_file(path_);
  f[8] = char(kFormatVersion + 1);  // slot A's version
  write_file(path_, f);
  try {
    Store::open(path_);
    FAIL() << "a newer format was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer BareFlow"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path_), f);
}

TEST_F(StoreTest, EmptyFileAndMissingFileAreFreshStores) {
  write_file(path_, "");
  Store s = Store::open(path_);
  EXPECT_TRUE(content(s).empty());
  s.put(Kind::Model, "a", bytes("one"));
  s.commit();
  EXPECT_EQ(content(Store::open(path_)).size(), 1u);

  Options ro;
  ro.read_only = true;
  Store missing = Store::open(dir_ + "/none.bfs", ro);
  EXPECT_TRUE(content(missing).empty());
  EXPECT_THROW(missing.commit(), Error);
  EXPECT_NE(access((dir_ + "/none.bfs").c_str(), F_OK), 0);  // read-only never creates
}

TEST_F(StoreTest, TwoWritersKeepEachOthersRecords) {
  Store a = Store::open(path_);
  Store b = Store::open(path_);
  a.put(Kind::Model, "from-a", bytes("1"));
  a.commit();
  b.put(Kind::Model, "from-b", bytes("2"));
  b.put(Kind::Model, "shared", bytes("b"));
  b.commit();
  a.put(Kind::Model, "shared", bytes("a"));
  a.commit();
  const Content c = content(Store::open(path_));
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.at({int(Kind::Model), "shared"}), "a");  // the later commit wins
  EXPECT_EQ(c.at({int(Kind::Model), "from-b"}), "2");
}

TEST_F(StoreTest, EvictsOldestBeyondTheBound) {
  Options o;
  o.max_bytes = 10000;
  Store s = Store::open(path_, o);
  for (int i = 0; i < 10; i++) {
    s.put(Kind::Variant, "v" + std::to_string(i), bytes(std::string(3000, 'v')));
    s.commit();
  }
  EXPECT_LE(s.live_bytes(), 10000u);
  EXPECT_GT(s.evicted(), 0u);
  EXPECT_EQ(s.find(Kind::Variant, "v0"), nullptr);
  EXPECT_NE(s.find(Kind::Variant, "v9"), nullptr);
  EXPECT_LT(Store::open(path_).file_bytes(), 8192u + 2 * 10000u + 4096u);
}

TEST(Crc32c, KnownValue) {
  // The CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  // Every length and alignment (the 8-byte steps and their tails), and chaining, against the
  // definition bit by bit.
  std::vector<uint8_t> bytes(300);
  for (size_t i = 0; i < bytes.size(); i++) bytes[i] = uint8_t(i * 131 + 7);
  const auto bitwise = [](const uint8_t* p, size_t n) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
      c ^= p[i];
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
  };
  for (size_t off = 0; off < 9; off++)
    for (size_t n = 0; off + n <= bytes.size(); n += 7) EXPECT_EQ(crc32c(bytes.data() + off, n), bitwise(bytes.data() + off, n));
  EXPECT_EQ(crc32c(bytes.data() + 100, 200, crc32c(bytes.data(), 100)), bitwise(bytes.data(), 300));
}

}  // namespace
}  // namespace bf::state
