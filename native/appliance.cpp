#include "native/appliance.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "engine/build_id.h"
#include "engine/error.h"
#include "engine/fnv1a.h"

namespace bf::native {

namespace {

constexpr char kTrailerMagic[8] = {'B', 'F', 'A', 'P', 'P', 'L', 'I', '1'};
constexpr char kManifestHead[] = "bareflow-appliance 1";
constexpr size_t kMaxUnits = 64;

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(uint8_t(v >> (8 * i)));
}

uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

// Manifest values are single lines: a newline inside one would make the next field.
const std::string& one_line(const std::string& v, const char* what) {
  if (v.find('\n') != std::string::npos) fail("appliance", std::string(what) + " holds a newline");
  return v;
}

[[noreturn]] void damaged(const std::string& what) { fail("appliance payload", what); }

// Reads "key value\n" lines from the manifest, in order.
struct ManifestReader {
  std::string_view rest;

  std::string_view line() {
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) damaged("the manifest ends inside a line");
    const std::string_view l = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    return l;
  }
  // The value of the next line, which must start with `key` and a space.
  std::string field(std::string_view key) {
    const std::string_view l = line();
    if (l.size() <= key.size() || l.substr(0, key.size()) != key || l[key.size()] != ' ')
      damaged("expected '" + std::string(key) + "', found '" + printable(l.substr(0, 40)) + "'");
    return std::string(l.substr(key.size() + 1));
  }
};

// Splits off the first space-separated word of `s`.
std::string word(std::string& s) {
  const size_t sp = s.find(' ');
  std::string w = s.substr(0, sp);
  s = sp == std::string::npos ? "" : s.substr(sp + 1);
  return w;
}

}  // namespace

std::string short_model_description(const std::string& d) { return d.substr(0, d.find(" embed=")); }

std::vector<uint8_t> encode_appliance_payload(const AppliancePayload& p, uint64_t executable_size) {
  std::string m = std::string(kManifestHead) + "\n";
  m += "model " + one_line(p.model_hash, "the model hash") + " " + one_line(p.model_file, "the model file name") + "\n";
  m += "description " + one_line(p.model_description, "the model description") + "\n";
  m += "cpu " + one_line(p.cpu, "the CPU name") + "\n";
  m += "cpuid " + format_cpu_features(p.cpuid) + "\n";
  m += "engine " + one_line(p.engine_source, "the engine id") + " " + one_line(p.exporter_build, "the build id") + "\n";
  if (p.units.size() > kMaxUnits) fail("appliance", "more than " + std::to_string(kMaxUnits) + " units");
  for (const AppliancePayload::Unit& u : p.units) {
    for (const std::string* w : {&u.name, &u.tier, &u.symbol})
      if (w->empty() || w->find_first_of(" \n") != std::string::npos) fail("appliance", "unit field '" + *w + "' is not one word");
    m += "unit " + u.name + " " + u.tier + " " + u.symbol + " " + std::to_string(u.object.size()) + " " +
         one_line(u.spec, "a unit's specialization") + "\n";
  }
  m += "end\n";
  std::vector<uint8_t> out(m.begin(), m.end());
  for (const AppliancePayload::Unit& u : p.units) out.insert(out.end(), u.object.begin(), u.object.end());
  if (out.size() > kMaxAppliancePayload) fail("appliance", "the payload exceeds " + std::to_string(kMaxAppliancePayload >> 20) + " MiB");
  const uint64_t sum = fnv1a(std::string_view(reinterpret_cast<const char*>(out.data()), out.size()));
  const uint64_t size = out.size();
  out.insert(out.end(), kTrailerMagic, kTrailerMagic + 8);
  put_u64(out, executable_size);
  put_u64(out, size);
  put_u64(out, sum);
  return out;
}

AppliancePayload decode_appliance_payload(std::span<const uint8_t> tail, uint64_t tail_offset) {
  if (tail.size() < kApplianceTrailerBytes) damaged("the file is too short to hold one");
  const uint8_t* t = tail.data() + tail.size() - kApplianceTrailerBytes;
  if (std::memcmp(t, kTrailerMagic, 8) != 0)
    damaged("none is appended to this executable (it is the template: make one with bareflow export)");
  const uint64_t offset = get_u64(t + 8), size = get_u64(t + 16), sum = get_u64(t + 24);
  const uint64_t end = tail_offset + tail.size() - kApplianceTrailerBytes;  // the payload's end in the file
  if (size > kMaxAppliancePayload || offset < tail_offset || offset > end || size != end - offset)
    damaged("its trailer's offset and size do not match the file (truncated or appended to)");
  const std::string_view bytes(reinterpret_cast<const char*>(tail.data() + (offset - tail_offset)), size);
  if (fnv1a(bytes) != sum) damaged("its checksum does not match (the file is damaged)");

  AppliancePayload p;
  ManifestReader r{bytes};
  if (r.line() != kManifestHead) damaged("the manifest's first line is not '" + std::string(kManifestHead) + "'");
  std::string model = r.field("model");
  p.model_hash = word(model);
  p.model_file = model;
  p.model_description = r.field("description");
  p.cpu = r.field("cpu");
  p.cpuid = parse_cpu_features(r.field("cpuid"));
  std::string engine = r.field("engine");
  p.engine_source = word(engine);
  p.exporter_build = engine;
  std::vector<uint64_t> sizes;
  for (;;) {
    const std::string_view l = r.line();
    if (l == "end") break;
    if (p.units.size() == kMaxUnits) damaged("more than " + std::to_string(kMaxUnits) + " units");
    if (l.substr(0, 5) != "unit ") damaged("expected 'unit' or 'end', found '" + printable(l.substr(0, 40)) + "'");
    std::string rest(l.substr(5));
    AppliancePayload::Unit u;
    u.name = word(rest);
    u.tier = word(rest);
    u.symbol = word(rest);
    const std::string n = word(rest);
    u.spec = rest;
    if (u.name.empty() || u.tier.empty() || u.symbol.empty() || n.empty() || n.size() > 9 ||
        n.find_first_not_of("0123456789") != std::string::npos)
      damaged("a malformed unit line '" + printable(l.substr(0, 60)) + "'");
    sizes.push_back(std::stoull(n));
    p.units.push_back(std::move(u));
  }
  // The objects follow the manifest, in unit order, filling the payload exactly.
  uint64_t at = bytes.size() - r.rest.size();
  for (size_t i = 0; i < p.units.size(); i++) {
    if (sizes[i] > bytes.size() - at) damaged("unit " + p.units[i].name + "'s object runs past the payload");
    const uint8_t* o = reinterpret_cast<const uint8_t*>(bytes.data()) + at;
    p.units[i].object.assign(o, o + sizes[i]);
    at += sizes[i];
  }
  if (at != bytes.size()) damaged(std::to_string(bytes.size() - at) + " bytes follow the last object");
  return p;
}

AppliancePayload read_appliance_payload(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < off_t(kApplianceTrailerBytes)) {
    close(fd);
    damaged(path + " is too short to hold one");
  }
  const uint64_t file_size = uint64_t(st.st_size);
  // Only the payload is read, not the executable before it: the trailer says where it starts. A
  // trailer that does not say so sensibly is left to the decoder to name.
  uint8_t t[kApplianceTrailerBytes];
  uint64_t start = file_size - sizeof t;
  if (pread(fd, t, sizeof t, off_t(start)) == ssize_t(sizeof t) && std::memcmp(t, kTrailerMagic, 8) == 0 &&
      get_u64(t + 8) <= start && start - get_u64(t + 8) <= kMaxAppliancePayload)
    start = get_u64(t + 8);
  std::vector<uint8_t> tail(file_size - start);
  size_t got = 0;
  while (got < tail.size()) {
    const ssize_t n = pread(fd, tail.data() + got, tail.size() - got, off_t(start + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  const int e = errno;
  close(fd);
  if (got != tail.size()) fail(path, std::string("cannot read its payload: ") + (e ? std::strerror(e) : "short read"));
  return decode_appliance_payload(tail, start);
}

std::string appliance_mismatch(const AppliancePayload& p, const CpuFeatures& cpu, const std::string& model_hash,
                               const std::string& model_description) {
  if (const std::string missing = missing_features(p.cpuid, cpu); !missing.empty())
    return "this CPU lacks " + missing + ", which its code was compiled for (" + p.cpu.substr(0, p.cpu.find(' ')) +
           "); export it again on this machine";
  if (p.engine_source != engine_source_id())
    return "its code was verified in another engine build (" + p.engine_source + ", this is " + engine_source_id() + ")";
  if (model_hash != p.model_hash || model_description != p.model_description)
    return "it was exported for another model (" + p.model_file + ": " + short_model_description(p.model_description) +
           "; this one is " + short_model_description(model_description) + ")";
  return "";
}

std::vector<LoadedObject> install_appliance_code(const AppliancePayload& p, Transformer& t) {
  std::vector<LoadedObject> objects;
  objects.reserve(p.units.size());
  for (const AppliancePayload::Unit& u : p.units) {
    int site = -1, fusion = -1;
    for (size_t s = 0; s < kSiteCount; s++)
      if (u.name == site_name(Site(s))) site = int(s);
    for (size_t f = 0; f < kFusionCount; f++)
      if (u.name == fusion_name(Fusion(f))) fusion = int(f);
    if (site < 0 && fusion < 0) fail("appliance", "unit '" + printable(u.name) + "' is no site or fused group of this engine");
    LoadedObject o = LoadedObject::load(u.object);
    void* fn = o.find(u.symbol);
    if (!fn) fail("appliance", "unit " + u.name + "'s object does not define " + printable(u.symbol));
    if (site >= 0) {
      t.set_site_kernel(Site(site), reinterpret_cast<MatvecFn>(fn));
    } else {
      t.set_fused_kernel(Fusion(fusion), reinterpret_cast<FusedFn>(fn));
    }
    objects.push_back(std::move(o));
  }
  return objects;
}

}  // namespace bf::native
