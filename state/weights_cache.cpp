#include "state/weights_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cinttypes>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/build_id.h"
#include "engine/fnv1a.h"
#include "engine/error.h"
#include "state/store.h"

namespace bf::state {
namespace {

constexpr char kMagic[8] = {'B', 'F', 'W', 'E', 'I', 'G', 'H', 'T'};
constexpr uint32_t kVersion = 2;
// Read and written this much at a time: large enough for full-speed I/O, small enough to stay in L2
// for the checksum.
constexpr size_t kChunk = 1 << 20;
// Left free on the disk after writing a copy: the store and everything else need room too.
constexpr uint64_t kDiskReserve = 256ull << 20;

// The file: this header, then the repacked matrices exactly as m.repacked holds them.
struct WeightsFileHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_crc;         // CRC-32C of the header with this field 0
  char engine_source[64];      // engine_source_id(): the code that defines the layouts
  uint64_t identity_hash;      // model_identity() of the file's layout: format, shapes, types
  uint64_t source_size;        // the model file, as stat() reports it
  uint64_t source_mtime_ns;
  uint64_t source_inode;
  uint64_t source_device;
  uint64_t source_ctime_ns;    // no user call sets it back: a copy made over the file (cp -p) shows
  uint64_t payload_bytes;      // repacked_bytes()
  uint32_t source_sample_crc;  // sampled_source_crc(): the first and last 4 KiB of each matrix
  uint32_t payload_crc;        // CRC-32C of the payload
};
static_assert(sizeof(WeightsFileHeader) == 144 && offsetof(WeightsFileHeader, payload_crc) == 140);

uint32_t header_crc(WeightsFileHeader h) {
  h.header_crc = 0;
  return crc32c(&h, sizeof h);
}

// The bytes that tell two model files of one shape apart without reading all of them: the first and
// last 4 KiB of every matrix that is repacked, read from the file's mapping before it is.
uint32_t sampled_source_crc(Model& m) {
  constexpr uint64_t kSample = 4096;
  uint32_t crc = 0;
  for (const Matrix* x : repackable_matrices(m)) {
    const uint8_t* p = static_cast<const uint8_t*>(x->data);
    const uint64_t n = matrix_bytes(*x), s = std::min(n, kSample);
    crc = crc32c(p, s, crc);
    crc = crc32c(p + n - s, s, crc);
    m.file.drop_pages(p, s);
    m.file.drop_pages(p + n - s, s);
  }
  return crc;
}

// The header this model, as it is now, would have (payload_crc and header_crc not filled).
// False when the model file cannot be stat()ed.
bool expected_header(Model& m, const std::string& model_path, WeightsFileHeader* h) {
  struct stat st;
  if (stat(model_path.c_str(), &st) != 0) return false;
  *h = WeightsFileHeader{};
  std::memcpy(h->magic, kMagic, sizeof kMagic);
  h->version = kVersion;
  std::snprintf(h->engine_source, sizeof h->engine_source, "%s", engine_source_id());
  h->identity_hash = std::strtoull(model_identity(m).hash.c_str(), nullptr, 16);
  h->source_size = uint64_t(st.st_size);
  h->source_mtime_ns = uint64_t(st.st_mtim.tv_sec) * 1000000000ull + uint64_t(st.st_mtim.tv_nsec);
  h->source_inode = uint64_t(st.st_ino);
  h->source_device = uint64_t(st.st_dev);
  h->source_ctime_ns = uint64_t(st.st_ctim.tv_sec) * 1000000000ull + uint64_t(st.st_ctim.tv_nsec);
  h->payload_bytes = repacked_bytes(m);
  h->source_sample_crc = sampled_source_crc(m);
  return true;
}

bool same_source(const WeightsFileHeader& a, const WeightsFileHeader& b) {
  return a.version == b.version && std::memcmp(a.engine_source, b.engine_source, sizeof a.engine_source) == 0 &&
         a.identity_hash == b.identity_hash && a.source_size == b.source_size &&
         a.source_mtime_ns == b.source_mtime_ns && a.source_inode == b.source_inode &&
         a.source_device == b.source_device && a.source_ctime_ns == b.source_ctime_ns &&
         a.payload_bytes == b.payload_bytes &&
         a.source_sample_crc == b.source_sample_crc;
}

// Reads exactly n bytes; false on an error or a short file (errno 0 then).
bool read_all(int fd, void* buf, size_t n) {
  uint8_t* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) errno = 0;
    if (r <= 0) return false;
    p += r, n -= size_t(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w == 0) errno = ENOSPC;
    if (w <= 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

enum class Lookup : uint8_t { Loaded, Missing, Stale, Damaged };

// The cached copy at `path` into m.repacked when it matches `want`; *why says what is wrong with a
// damaged one.
Lookup load_copy(Model& m, const std::string& path, const WeightsFileHeader& want, std::string* why) {
  // O_NONBLOCK: a FIFO put there is refused below instead of blocking; O_NOFOLLOW: the copy is ours.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? Lookup::Missing : (*why = std::string("cannot open: ") + std::strerror(errno), Lookup::Damaged);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  WeightsFileHeader h;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return *why = "not a regular file", Lookup::Damaged;
  if (!read_all(fd, &h, sizeof h) || std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    return *why = "not a repacked-weights file", Lookup::Damaged;
  if (h.version != kVersion) return Lookup::Stale;  // another layout of this file: not damage
  if (h.header_crc != header_crc(h)) return *why = "header checksum mismatch", Lookup::Damaged;
  if (!same_source(h, want)) return Lookup::Stale;
  if (uint64_t(st.st_size) != sizeof h + h.payload_bytes)
    return *why = "size " + std::to_string(st.st_size) + " is not the header's " + std::to_string(sizeof h + h.payload_bytes),
           Lookup::Damaged;
  AnonymousMemory mem = AnonymousMemory::allocate(h.payload_bytes);
  if (!mem.data()) return *why = "cannot allocate " + std::to_string(h.payload_bytes >> 20) + " MiB", Lookup::Damaged;
  uint32_t crc = 0;
  for (uint64_t off = 0; off < h.payload_bytes; off += kChunk) {
    const size_t n = size_t(std::min<uint64_t>(kChunk, h.payload_bytes - off));
    if (!read_all(fd, mem.data() + off, n))
      return *why = errno == 0 ? std::string("the file ended early") : std::string("read failed: ") + std::strerror(errno),
             Lookup::Damaged;
    crc = crc32c(mem.data() + off, n, crc);
  }
  if (crc != h.payload_crc) return *why = "payload checksum mismatch", Lookup::Damaged;
  use_repacked(m, std::move(mem));
  return Lookup::Loaded;
}

// Writes m.repacked with `h` (payload_crc, header_crc filled here) to `path` crash-safely. "" when
// kept; else why not ("-" for a platform without files there: no note).
std::string save_copy(const Model& m, const std::string& path, WeightsFileHeader h) {
  const std::string dir = path.substr(0, path.rfind('/'));
  const std::string name = path.substr(dir.size() + 1);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    const int e = errno;
    return e == ENOSYS || e == EROFS ? "-" : "cannot create " + printable(dir) + ": " + std::strerror(e);
  }
  // A run killed while writing leaves <name>.tmp.<pid>: gone once that process is.
  if (DIR* d = opendir(dir.c_str())) {
    const std::string prefix = name + ".tmp.";
    while (const dirent* e = readdir(d)) {
      const std::string f = e->d_name;
      if (f.compare(0, prefix.size(), prefix) != 0) continue;
      char* end = nullptr;
      const long pid = std::strtol(f.c_str() + prefix.size(), &end, 10);
      if (*end == 0 && pid > 0 && pid <= INT_MAX && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH)
        ::unlink((dir + "/" + f).c_str());
    }
    closedir(d);
  }
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) == 0) {
    uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    struct stat old;  // the copy this one replaces frees its room
    if (lstat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) free_bytes += uint64_t(old.st_size);
    if (free_bytes < h.payload_bytes + kDiskReserve)
      return "the disk has " + std::to_string(free_bytes >> 20) + " MiB free; the copy needs " +
             std::to_string(h.payload_bytes >> 20) + " MiB and " + std::to_string(kDiskReserve >> 20) + " MiB left over";
  }
  h.payload_crc = crc32c(m.repacked.data(), m.repacked.size());
  h.header_crc = header_crc(h);
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  ::unlink(tmp.c_str());  // this pid's own leftover (another container, the same pid): never followed
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int e = errno;
    return e == ENOSYS || e == EROFS ? "-" : "cannot create " + printable(tmp) + ": " + std::strerror(e);
  }
  bool ok = write_all(fd, &h, sizeof h);
  for (uint64_t off = 0; ok && off < m.repacked.size(); off += kChunk)
    ok = write_all(fd, m.repacked.data() + off, size_t(std::min<uint64_t>(kChunk, m.repacked.size() - off)));
  ok = ok && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  std::string why;
  if (!ok) {
    why = "cannot write " + printable(tmp) + ": " + std::strerror(e);
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    e = errno;
    why = "cannot rename " + printable(tmp) + " to " + printable(path) + ": " + std::strerror(e);
  }
  if (!why.empty()) {
    ::unlink(tmp.c_str());
    return why;
  }
  // The rename itself survives a crash once the folder is synced.
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return "";
}

// <the store's folder>/repacked
std::string cache_dir(const std::string& state_path) {
  const size_t slash = state_path.rfind('/');
  return (slash == std::string::npos ? "." : state_path.substr(0, slash)) + "/repacked";
}

}  // namespace

std::string weights_cache_path(const std::string& state_path, const std::string& model_path) {
  if (state_path.empty()) return "";
  char real[PATH_MAX];
  const std::string name = realpath(model_path.c_str(), real) ? std::string(real) : model_path;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, fnv1a(name));
  return cache_dir(state_path) + "/" + hex + ".bfw";
}

WeightsCacheFiles weights_cache_files(const std::string& state_path, bool remove) {
  WeightsCacheFiles f;
  const std::string dir = cache_dir(state_path);
  DIR* d = opendir(dir.c_str());
  if (!d) return f;
  while (const dirent* e = readdir(d)) {
    // Only names this file gives: 16 hex digits, ".bfw", and for a temporary ".tmp.<pid>".
    const std::string name = e->d_name;
    if (name.size() < 20 || name.find_first_not_of("0123456789abcdef") != 16 || name.compare(16, 4, ".bfw") != 0) continue;
    const bool tmp = name.size() > 20;
    if (tmp && (name.compare(20, 5, ".tmp.") != 0 || name.size() == 25 ||
                name.find_first_not_of("0123456789", 25) != std::string::npos))
      continue;
    struct stat st;
    const std::string path = dir + "/" + name;
    if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (!tmp) {  // and a finished copy starts with the magic
      char magic[sizeof kMagic] = {};
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
      const bool ours = fd >= 0 && read_all(fd, magic, sizeof magic) && std::memcmp(magic, kMagic, sizeof kMagic) == 0;
      if (fd >= 0) ::close(fd);
      if (!ours) continue;
    }
    if (remove && ::unlink(path.c_str()) != 0) continue;
    f.files++, f.bytes += uint64_t(st.st_size);
  }
  closedir(d);
  return f;
}

const char* weights_cache_name(WeightsCache w) {
  switch (w) {
    case WeightsCache::Nothing: return "nothing to repack";
    case WeightsCache::Loaded: return "loaded";
    case WeightsCache::Saved: return "repacked, saved";
    case WeightsCache::Repacked: return "repacked, not saved";
  }
  return "?";
}

WeightsCache repack_with_cache(Model& m, const std::string& model_path, const std::string& path, FILE* log) {
  if (repacked_bytes(m) == 0) return WeightsCache::Nothing;
  WeightsFileHeader want;
  if (path.empty() || !expected_header(m, model_path, &want)) {
    repack_weights(m);
    return WeightsCache::Repacked;
  }
  std::string damage;
  const Lookup l = load_copy(m, path, want, &damage);
  if (l == Lookup::Loaded) return WeightsCache::Loaded;
  repack_weights(m);
  const std::string why = save_copy(m, path, want);
  // At most one note: the damage (the copy is rewritten), or why no copy is kept (a damaged one is
  // removed then, so that the next run does not trip on it again).
  if (why.empty()) {
    if (!damage.empty() && log)
      std::fprintf(log, "bareflow: note: %s: damaged repacked weights (%s); repacked again\n", printable(path).c_str(),
                   damage.c_str());
    return WeightsCache::Saved;
  }
  if (!damage.empty()) ::unlink(path.c_str());
  const std::string was = damage.empty() ? "" : " (the copy there was damaged: " + damage + ")";
  if (why != "-" && log) std::fprintf(log, "bareflow: note: repacked weights not kept%s: %s\n", was.c_str(), why.c_str());
  return WeightsCache::Repacked;
}

}  // namespace bf::state
