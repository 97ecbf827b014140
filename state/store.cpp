#include "state/store.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "engine/error.h"

namespace bf::state {

namespace {

constexpr uint64_t kSlotBytes = 4096;
constexpr uint64_t kLogBase = 2 * kSlotBytes;  // the log starts after both superblock slots
constexpr char kMagic[8] = {'B', 'F', 'S', 'T', 'O', 'R', 'E', '\0'};
constexpr uint32_t kRecordMagic = 0x43524642;  // "BFRC"
constexpr uint32_t kMaxKey = 64 << 10;
constexpr uint32_t kMaxValue = 256u << 20;
constexpr uint16_t kTombstone = 1;

struct Superblock {
  char magic[8];
  uint32_t version;
  uint32_t size;  // sizeof(Superblock): a later version may grow it
  uint64_t generation;
  uint64_t log_begin;
  uint64_t log_end;
  uint64_t records;
  uint32_t reserved;
  uint32_t crc;  // of every byte before it
};
static_assert(sizeof(Superblock) == 56 && offsetof(Superblock, crc) == 52);

struct RecordHeader {
  uint32_t magic;
  uint16_t kind;
  uint16_t flags;
  uint32_t key_len;
  uint32_t value_len;
  uint32_t crc;  // of the header with crc = 0, the key and the value
  uint32_t reserved;
};
static_assert(sizeof(RecordHeader) == 24);

constexpr uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t(7); }
uint64_t record_bytes(size_t key, size_t value) { return align8(sizeof(RecordHeader) + key + value); }

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

uint32_t superblock_crc(const Superblock& s) { return crc32c(&s, offsetof(Superblock, crc)); }

bool known_kind(uint16_t k) { return k >= uint16_t(Kind::Model) && k <= uint16_t(Kind::Run); }

}  // namespace

namespace {

// SSE4.2's crc32 computes CRC-32C: 8 bytes a step instead of 1, for the large checksums (repacked
// weights, state/weights_cache.cpp). Same value as the table.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* p, size_t n, uint32_t crc) {
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
  }
  uint32_t c32 = uint32_t(c);
  for (; n > 0; p++, n--) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

bool has_sse42() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 20));
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  static const bool sse42 = has_sse42();
  if (sse42) return ~crc32c_sse42(p, n, ~crc);
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = kCrcTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// Every byte the store reads or writes goes through here: one place to count operations for the
// fault plan, and to undo unflushed writes when the plan says the disk cache lost them.
struct Store::Io {
  int fd;
  std::string path;
  FaultPlan plan;
  uint64_t ops = 0;
  struct Undo {
    uint64_t offset;
    std::vector<uint8_t> old;  // bytes that were there (within the old size)
    uint64_t old_size;
  };
  std::vector<Undo> undo;  // writes since the last flush (LoseUnflushed only)

  uint64_t size() const {
    struct stat st;
    if (fstat(fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
    return uint64_t(st.st_size);
  }

  // Reads exactly n bytes at off; false if the file ends first.
  bool read(uint64_t off, void* buf, size_t n) const {
    uint8_t* p = static_cast<uint8_t*>(buf);
    while (n > 0) {
      const ssize_t r = pread(fd, p, n, off_t(off));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail(path, std::string("cannot read: ") + std::strerror(errno));
      if (r == 0) return false;
      p += r, off += uint64_t(r), n -= size_t(r);
    }
    return true;
  }

  // Counts an operation; fires the fault plan when it is this one.
  bool fault_now() { return plan.mode != FaultPlan::Mode::None && ++ops == plan.at_op; }

  [[noreturn]] void crash() {
    if (plan.mode == FaultPlan::Mode::Reorder && !undo.empty()) undo.pop_back();  // the last write stays
    if (plan.mode == FaultPlan::Mode::LoseUnflushed || plan.mode == FaultPlan::Mode::Reorder) {
      for (auto u = undo.rbegin(); u != undo.rend(); ++u) {
        raw_write(u->offset, u->old.data(), u->old.size());
        if (ftruncate(fd, off_t(u->old_size)) != 0) fail(path, "fault plan: cannot undo");
      }
    }
    if (plan.exit_process) _exit(kCrashExitStatus);
    throw SimulatedCrash{};
  }

  void remember(uint64_t off, size_t n) {
    if (plan.mode != FaultPlan::Mode::LoseUnflushed && plan.mode != FaultPlan::Mode::Reorder) return;
    const uint64_t old_size = size();
    Undo u{off, {}, old_size};
    if (off < old_size) {
      u.old.resize(size_t(std::min<uint64_t>(n, old_size - off)));
      read(off, u.old.data(), u.old.size());
    }
    undo.push_back(std::move(u));
  }

  void raw_write(uint64_t off, const void* buf, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
      const ssize_t w = pwrite(fd, p, n, off_t(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail(path, std::string("cannot write: ") + std::strerror(w < 0 ? errno : ENOSPC));
      p += w, off += uint64_t(w), n -= size_t(w);
    }
  }

  void write(uint64_t off, const void* buf, size_t n) {
    const bool fire = fault_now();
    if (fire && plan.mode == FaultPlan::Mode::Stop) crash();
    remember(off, n);
    if (fire && plan.mode == FaultPlan::Mode::Tear) {
      raw_write(off, buf, n / 2);
      crash();
    }
    raw_write(off, buf, n);
    if (fire) crash();  // LoseUnflushed: lost with the others; Reorder: kept, the others lost
  }

  void flush() {
    if (fault_now()) crash();
    if (fdatasync(fd) != 0) fail(path, std::string("cannot flush: ") + std::strerror(errno));
    undo.clear();
  }

  void truncate(uint64_t n) {
    if (fault_now()) crash();
    if (ftruncate(fd, off_t(n)) != 0) fail(path, std::string("cannot truncate: ") + std::strerror(errno));
  }
};

namespace {

// flock where the platform has it (the unikernel has one process and may answer ENOSYS).
class FileLock {
 public:
  FileLock(int fd, int op, const std::string& path) : fd_(fd) {
    while (flock(fd, op) != 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) return;
      fail(path, std::string("cannot lock: ") + std::strerror(errno));
    }
    locked_ = true;
  }
  ~FileLock() {
    if (locked_) flock(fd_, LOCK_UN);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
  bool locked_ = false;
};

enum class SlotState : uint8_t { Blank, Damaged, Newer, Valid };

SlotState read_slot(const Store::Io& io, int slot, Superblock& s) {
  std::memset(&s, 0, sizeof s);
  const bool whole = io.read(uint64_t(slot) * kSlotBytes, &s, sizeof s);
  if (!whole || std::memcmp(s.magic, kMagic, sizeof kMagic) != 0) {
    // Only zeros (also a file cut inside the header region): blank; anything else: not a slot.
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&s);
    return std::all_of(b, b + sizeof s, [](uint8_t c) { return c == 0; }) ? SlotState::Blank : SlotState::Damaged;
  }
  if (s.version > kFormatVersion) return SlotState::Newer;
  if (s.version != kFormatVersion || s.size != sizeof s || s.crc != superblock_crc(s)) return SlotState::Damaged;
  if (s.log_begin < kLogBase || s.log_begin > s.log_end || s.log_begin % 8 || s.log_end % 8)
    return SlotState::Damaged;
  return SlotState::Valid;
}

}  // namespace

FaultPlan fault_plan_from_env() {
  const char* v = std::getenv("BAREFLOW_STATE_FAULT");
  if (!v || !*v) return {};
  const std::string s = v;
  const size_t colon = s.find(':');
  const std::string mode = s.substr(0, colon);
  FaultPlan p;
  p.exit_process = true;
  if (mode == "stop") p.mode = FaultPlan::Mode::Stop;
  else if (mode == "tear") p.mode = FaultPlan::Mode::Tear;
  else if (mode == "lose") p.mode = FaultPlan::Mode::LoseUnflushed;
  else if (mode == "reorder") p.mode = FaultPlan::Mode::Reorder;
  char* end = nullptr;
  if (colon != std::string::npos) p.at_op = std::strtoull(s.c_str() + colon + 1, &end, 10);
  if (p.mode == FaultPlan::Mode::None || colon == std::string::npos || !end || *end || p.at_op == 0)
    fail("BAREFLOW_STATE_FAULT", "'" + s + "' is not stop:N, tear:N, lose:N or reorder:N (N >= 1)");
  return p;
}

Store::Store(Store&& o) noexcept
    : path_(std::move(o.path_)), opt_(o.opt_), fd_(std::exchange(o.fd_, -1)), io_(std::exchange(o.io_, nullptr)),
      live_(std::move(o.live_)), staged_(std::move(o.staged_)), problems_(std::move(o.problems_)),
      generation_(o.generation_), slot_(o.slot_), log_begin_(o.log_begin_), log_end_(o.log_end_),
      log_records_(o.log_records_),
      next_seq_(o.next_seq_), evicted_(o.evicted_), needs_compaction_(o.needs_compaction_) {}

Store::~Store() {
  delete io_;
  if (fd_ >= 0) ::close(fd_);
}

Store Store::open(const std::string& path, const Options& o) {
  Store s;
  s.path_ = path;
  s.opt_ = o;
  // O_NONBLOCK so that a FIFO is refused at once instead of blocking the open.
  const int flags = (o.read_only ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC | O_NONBLOCK;
  s.fd_ = ::open(path.c_str(), flags, 0644);
  if (s.fd_ < 0 && o.read_only && errno == ENOENT) {
    s.log_begin_ = s.log_end_ = kLogBase;  // nothing stored yet
    return s;
  }
  if (s.fd_ < 0) fail(path, std::string("cannot open the state store: ") + std::strerror(errno));
  struct stat st;
  if (fstat(s.fd_, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "the state store is not a regular file");
  if (fcntl(s.fd_, F_SETFL, fcntl(s.fd_, F_GETFL) & ~O_NONBLOCK) != 0)
    fail(path, std::string("cannot open: ") + std::strerror(errno));
  s.io_ = new Io{s.fd_, path, o.fault, 0, {}};
  FileLock lock(s.fd_, LOCK_SH, path);
  s.load();
  return s;
}

// Reads the newest valid superblock and replays its log into live_.
void Store::load() {
  live_.clear();
  problems_.clear();
  log_records_ = 0;
  needs_compaction_ = false;
  next_seq_ = 1;
  slot_ = -1;
  generation_ = 0;
  log_begin_ = log_end_ = kLogBase;
  const uint64_t size = io_->size();
  if (size == 0) return;  // a fresh store

  Superblock sb[2];
  const SlotState st[2] = {read_slot(*io_, 0, sb[0]), read_slot(*io_, 1, sb[1])};
  if (st[0] == SlotState::Newer || st[1] == SlotState::Newer)
    fail(path_, "the state store was written by a newer BareFlow (format " +
                    std::to_string(std::max(sb[0].version, sb[1].version)) + ", this build reads " +
                    std::to_string(kFormatVersion) + "); use --state with another file");
  int best = -1;
  for (int i = 0; i < 2; i++)
    if (st[i] == SlotState::Valid && (best < 0 || sb[i].generation > sb[best].generation)) best = i;
  if (best < 0) {
    // Blank slots, or one torn beside a blank one: a new store, or one that crashed before its
    // first commit point.
    const bool ours = std::memcmp(sb[0].magic, kMagic, 8) == 0 || std::memcmp(sb[1].magic, kMagic, 8) == 0;
    if (st[0] == SlotState::Blank && st[1] == SlotState::Blank) return;
    if ((st[0] == SlotState::Blank || st[1] == SlotState::Blank) && ours) return;
    if (!ours) fail(path_, "not a BareFlow state store (refusing to overwrite it)");
    // Ours, but no slot survives: it is a cache of what can be learned again, so start over
    // rather than refuse to run.
    problems_.push_back(path_ + ": both superblocks are damaged; the store starts empty");
    needs_compaction_ = true;
    return;
  }
  // A damaged slot beside a valid one is what a crash during a commit leaves: not a problem,
  // the next commit overwrites it.
  const Superblock& s = sb[best];
  slot_ = best;
  generation_ = s.generation;
  log_begin_ = s.log_begin;
  log_end_ = s.log_end;
  if (log_end_ > size) {
    problems_.push_back(path_ + ": the store is truncated (" + std::to_string(log_end_ - size) +
                        " bytes of its log are missing)");
    log_end_ = std::max(log_begin_, size & ~uint64_t(7));
    needs_compaction_ = true;
  }

  // Replay. A record that fails its checksum is dropped; scanning resumes at the next 8-byte
  // boundary where a whole record checks out.
  std::vector<uint8_t> buf;
  uint64_t off = log_begin_;
  uint64_t records = 0;
  bool in_damage = false;
  while (off + sizeof(RecordHeader) <= log_end_) {
    RecordHeader h;
    bool ok = io_->read(off, &h, sizeof h) && h.magic == kRecordMagic && h.key_len <= kMaxKey &&
              h.value_len <= kMaxValue && known_kind(h.kind) && (h.flags & ~kTombstone) == 0 &&
              off + record_bytes(h.key_len, h.value_len) <= log_end_;
    if (ok) {
      // The checksum covers the padding too: every byte of the log is checked.
      buf.resize(size_t(record_bytes(h.key_len, h.value_len) - sizeof h));
      ok = io_->read(off + sizeof h, buf.data(), buf.size());
      const uint32_t want = h.crc;
      h.crc = 0;
      ok = ok && crc32c(buf.data(), buf.size(), crc32c(&h, sizeof h)) == want;
    }
    if (!ok) {
      if (!in_damage)
        problems_.push_back(path_ + ": record at offset " + std::to_string(off) + " fails its checksum: dropped");
      in_damage = true;
      needs_compaction_ = true;
      off += 8;
      continue;
    }
    in_damage = false;
    Change c{(h.flags & kTombstone) ? Change::Op::Erase : Change::Op::Put, Kind(h.kind),
             std::string(reinterpret_cast<const char*>(buf.data()), h.key_len),
             std::vector<uint8_t>(buf.begin() + h.key_len, buf.begin() + h.key_len + h.value_len)};
    apply(c);
    records++;
    off += record_bytes(h.key_len, h.value_len);
  }
  log_records_ = records;
  if (records != s.records && !needs_compaction_) {
    problems_.push_back(path_ + ": the log holds " + std::to_string(records) + " records, its superblock says " +
                        std::to_string(s.records));
    needs_compaction_ = true;
  }
}

void Store::apply(const Change& c) {
  switch (c.op) {
    case Change::Op::Put: {
      Entry& e = live_[{c.kind, c.key}];
      e.kind = c.kind;
      e.key = c.key;
      e.value = c.value;
      e.seq = next_seq_++;
      break;
    }
    case Change::Op::Erase: {
      const auto it = live_.find(std::pair<Kind, std::string_view>{c.kind, c.key});
      if (it != live_.end()) live_.erase(it);
      break;
    }
  }
}

const Entry* Store::find(Kind kind, std::string_view key) const {
  const auto it = live_.find(std::pair<Kind, std::string_view>{kind, key});
  return it == live_.end() ? nullptr : &it->second;
}

std::vector<const Entry*> Store::all(Kind kind) const {
  std::vector<const Entry*> out;
  for (const auto& [k, e] : live_)
    if (k.first == kind) out.push_back(&e);
  return out;
}

void Store::put(Kind kind, std::string key, std::vector<uint8_t> value) {
  if (key.size() > kMaxKey || value.size() > kMaxValue) fail(path_, "state record too large");
  staged_.push_back({Change::Op::Put, kind, std::move(key), std::move(value)});
  apply(staged_.back());
}

void Store::erase(Kind kind, std::string_view key) {
  staged_.push_back({Change::Op::Erase, kind, std::string(key), {}});
  apply(staged_.back());
}

void Store::erase_all(Kind kind, std::string_view prefix) {
  std::vector<std::string> keys;
  for (const auto& [k, e] : live_)
    if (k.first == kind && k.second.starts_with(prefix)) keys.push_back(k.second);
  for (const std::string& k : keys) erase(kind, k);
}

uint64_t Store::file_bytes() const { return io_ ? io_->size() : 0; }

uint64_t Store::live_bytes() const {
  uint64_t n = 0;
  for (const auto& [k, e] : live_) n += record_bytes(e.key.size(), e.value.size());
  return n;
}

uint64_t Store::disk_generation() {
  Superblock sb[2];
  uint64_t g = 0;
  for (int i = 0; i < 2; i++)
    if (read_slot(*io_, i, sb[i]) == SlotState::Valid) g = std::max(g, sb[i].generation);
  return g;
}

void Store::commit() {
  if (opt_.read_only || !io_) fail(path_, "the state store is open read-only");
  if (staged_.empty() && !needs_compaction_) return;
  FileLock lock(fd_, LOCK_EX, path_);
  if (disk_generation() != generation_) {
    // Another process committed since we loaded: its records stay, ours are applied on top.
    std::vector<Change> mine = std::move(staged_);
    load();
    for (const Change& c : mine) apply(c);
    staged_ = std::move(mine);
  }

  // Evict the oldest records while the live set exceeds the bound.
  uint64_t live = live_bytes();
  if (live > opt_.max_bytes) {
    std::vector<std::pair<uint64_t, std::pair<Kind, std::string>>> by_age;
    for (const auto& [k, e] : live_) by_age.push_back({e.seq, k});
    std::sort(by_age.begin(), by_age.end());
    for (size_t i = 0; i < by_age.size() && live > opt_.max_bytes; i++) {
      const Entry& e = live_.at(by_age[i].second);
      live -= record_bytes(e.key.size(), e.value.size());
      live_.erase(by_age[i].second);
      evicted_++;
      needs_compaction_ = true;
    }
  }

  // What to write: the staged changes, or every live record when compacting (after damage or
  // eviction, on a new file, or when dead records outweigh the live ones).
  const uint64_t log_bytes = log_end_ - log_begin_;
  // A log that was compacted after its predecessor moves to the front as soon as it fits there,
  // and the file is cut behind it.
  const bool compact = needs_compaction_ || slot_ < 0 || (log_bytes > (64u << 10) && log_bytes > 2 * live) ||
                       (log_begin_ > kLogBase && kLogBase + live <= log_begin_);
  std::vector<uint8_t> out;
  uint64_t count = 0;
  auto add = [&](Kind kind, uint16_t flags, const std::string& key, const std::vector<uint8_t>& value) {
    RecordHeader h{kRecordMagic, uint16_t(kind), flags, uint32_t(key.size()), uint32_t(value.size()), 0, 0};
    const size_t at = out.size(), n = size_t(record_bytes(key.size(), value.size()));
    out.resize(at + n, 0);
    std::memcpy(out.data() + at + sizeof h, key.data(), key.size());
    if (!value.empty()) std::memcpy(out.data() + at + sizeof h + key.size(), value.data(), value.size());
    h.crc = crc32c(out.data() + at + sizeof h, n - sizeof h, crc32c(&h, sizeof h));
    std::memcpy(out.data() + at, &h, sizeof h);
    count++;
  };
  if (compact) {
    std::vector<const Entry*> order;
    for (const auto& [k, e] : live_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->seq < b->seq; });
    for (const Entry* e : order) add(e->kind, 0, e->key, e->value);
  } else {
    // Only the last change of each key since the previous commit.
    std::vector<const Change*> last;
    for (auto c = staged_.rbegin(); c != staged_.rend(); ++c)
      if (std::none_of(last.begin(), last.end(), [&](const Change* l) { return l->kind == c->kind && l->key == c->key; }))
        last.push_back(&*c);
    for (auto c = last.rbegin(); c != last.rend(); ++c)
      add((*c)->kind, (*c)->op == Change::Op::Erase ? kTombstone : 0, (*c)->key, (*c)->value);
  }

  // Where: appended after the log; a compacted log goes to the front when it fits before the
  // current one (so the file stays about the size of its live records), else after it.
  uint64_t begin = log_begin_, at = log_end_;
  if (compact) begin = at = kLogBase + out.size() <= log_begin_ ? kLogBase : log_end_;
  if (io_->size() < kLogBase) {
    // A new file: the zeroed header region first (both slots blank reads as an empty store).
    const std::vector<uint8_t> zeros(kLogBase, 0);
    io_->write(0, zeros.data(), zeros.size());
  }
  if (!out.empty()) io_->write(at, out.data(), out.size());
  at += out.size();
  io_->flush();  // the records are durable before any superblock points at them

  Superblock s{};
  std::memcpy(s.magic, kMagic, sizeof kMagic);
  s.version = kFormatVersion;
  s.size = sizeof s;
  s.generation = generation_ + 1;
  s.log_begin = begin;
  s.log_end = at;
  s.records = compact ? count : log_records_ + count;
  s.crc = superblock_crc(s);
  const int slot = slot_ == 0 ? 1 : 0;
  io_->write(uint64_t(slot) * kSlotBytes, &s, sizeof s);
  io_->flush();  // the commit point

  slot_ = slot;
  generation_ = s.generation;
  log_begin_ = begin;
  log_end_ = at;
  log_records_ = s.records;
  staged_.clear();
  needs_compaction_ = false;
  // After the commit point: if this is lost the file is only longer than it needs to be.
  if (compact && begin == kLogBase && io_->size() > at) io_->truncate(at);
}

}  // namespace bf::state
