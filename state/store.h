// The persistent store: one file of typed key/value records that survives a crash at any moment.
//
// Layout (docs/STATE.md): two superblock slots (A at 0, B at 4096), then an append-only log of
// checksummed records. A commit appends records, flushes them (fdatasync), then writes the other
// slot with generation + 1 and flushes again: a torn or lost write at any moment leaves either the
// old or the new generation readable, never a mixture. One file and only pread/pwrite/fdatasync/
// ftruncate, so the unikernel can keep it on a raw disk.
//
// Keys are full strings (not hashes): callers put every input that decides whether stored code may
// run into the key, so a different CPU, model or build can never match by collision.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace bf::state {

constexpr uint32_t kFormatVersion = 1;

// What a record holds; the store itself only keeps the latest value per (kind, key).
enum class Kind : uint16_t {
  Model = 1,    // per model: runs, merged profile, convergence
  Variant = 2,  // a compiled object and its metadata
  Run = 3,      // one record per run, for `state report`
};

// Test-only: make the store stop as if the power failed at its `at_op`-th I/O operation (writes,
// flushes and truncations counted from 1 since open). Tear: that write reaches the file only half.
// LoseUnflushed: every write since the last flush is undone (the disk cache lost them). Reorder:
// that write reaches the disk but every earlier unflushed one is lost (a cache that wrote back
// out of order): what a missing flush before a commit point would expose.
struct FaultPlan {
  enum class Mode : uint8_t { None, Stop, Tear, LoseUnflushed, Reorder };
  Mode mode = Mode::None;
  uint64_t at_op = 0;
  bool exit_process = false;  // _exit(kCrashExitStatus) instead of throwing SimulatedCrash
};
constexpr int kCrashExitStatus = 86;

// The plan in $BAREFLOW_STATE_FAULT ("stop:N", "tear:N", "lose:N", "reorder:N"), for crash tests
// of whole runs: the process exits with kCrashExitStatus at that operation. None when unset;
// throws bf::Error when malformed.
FaultPlan fault_plan_from_env();

// Thrown by the store when a FaultPlan fires; the Store object must not be used after it.
struct SimulatedCrash {};

struct Options {
  uint64_t max_bytes = 64ull << 20;  // live records beyond this are evicted, oldest first
  bool read_only = false;            // state show / verify / report: never writes, takes a shared lock
  FaultPlan fault{};
};

struct Entry {
  Kind kind{};
  std::string key;
  std::vector<uint8_t> value;
  uint64_t seq = 0;  // log order of the write that set it (older = smaller)
};

class Store {
 public:
  // Opens or creates `path`. Throws bf::Error (one line naming the file) if it is not a regular
  // file, is not a BareFlow store, is a store of a newer format, or cannot be read. Damage that
  // can be survived (a bad superblock slot, a record failing its checksum, a truncated log) is
  // listed in problems() and the readable records are kept; the next commit rewrites a clean log.
  static Store open(const std::string& path, const Options& o = {});
  Store(Store&& o) noexcept;
  Store& operator=(Store&&) = delete;
  Store(const Store&) = delete;
  ~Store();

  const Entry* find(Kind kind, std::string_view key) const;
  std::vector<const Entry*> all(Kind kind) const;  // in key order

  // Staged until commit().
  void put(Kind kind, std::string key, std::vector<uint8_t> value);
  void erase(Kind kind, std::string_view key);
  void erase_all(Kind kind, std::string_view key_prefix);  // the keys live now

  // Makes the staged changes durable. Takes the file lock, reloads what another process committed
  // meanwhile (its records stay, ours win on the same key), appends, flushes, switches superblock.
  void commit();

  const std::vector<std::string>& problems() const { return problems_; }
  const std::string& path() const { return path_; }
  uint64_t generation() const { return generation_; }
  uint64_t file_bytes() const;
  uint64_t live_bytes() const;  // what a compacted log would hold
  uint64_t evicted() const { return evicted_; }

  struct Io;  // the file, behind the fault plan (store.cpp)

 private:
  Store() = default;
  void load();
  uint64_t disk_generation();

  std::string path_;
  Options opt_{};
  int fd_ = -1;
  Io* io_ = nullptr;
  struct Change {
    enum class Op : uint8_t { Put, Erase };
    Op op;
    Kind kind;
    std::string key;
    std::vector<uint8_t> value;
  };
  void apply(const Change& c);

  struct KeyLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return a.first != b.first ? a.first < b.first : std::string_view(a.second) < std::string_view(b.second);
    }
  };
  std::map<std::pair<Kind, std::string>, Entry, KeyLess> live_;
  std::vector<Change> staged_;  // since the last commit, re-applied if another process committed
  std::vector<std::string> problems_;
  uint64_t generation_ = 0;
  int slot_ = -1;  // slot holding `generation_` (-1: fresh file)
  uint64_t log_begin_ = 0, log_end_ = 0, log_records_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t evicted_ = 0;
  bool needs_compaction_ = false;
};

// CRC-32C (Castagnoli), the checksum of every record and superblock.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace bf::state
