#include "profile/profiler.h"

#include <cinttypes>

#include "kernels/cycles.h"

namespace bf::prof {

Profiler::Profiler(std::vector<std::string> site_names, std::vector<std::string> variant_names) {
  sites_.resize(site_names.size());
  for (size_t i = 0; i < sites_.size(); i++) sites_[i].name = std::move(site_names[i]);
  set_variant_names(std::move(variant_names));
}

void Profiler::set_variant_names(std::vector<std::string> names) {
  assert(!names.empty() && names.size() <= kMaxVariants);
  variant_names_ = std::move(names);
}

uint64_t Profiler::total_calls() const {
  uint64_t n = 0;
  for (const SiteStats& s : sites_) n += s.calls;
  return n;
}

uint64_t Profiler::total_cycles() const {
  uint64_t n = 0;
  for (const SiteStats& s : sites_) n += s.cycles;
  return n;
}

namespace {
// Keeps the measured loop from being folded: the real hook is an indirect call too.
void (*volatile g_record)(Profiler&, uint64_t) = [](Profiler& p, uint64_t c) {
  p.record(0, c, 1, 1, 0);
};
}  // namespace

double Profiler::overhead_cycles_per_call() {
  static const double per_call = [] {
    Profiler p({"probe"});
    constexpr int kN = 200000;
    const uint64_t start = cycles();
    for (int i = 0; i < kN; i++) {
      const uint64_t t0 = cycles();
      const uint64_t t1 = cycles();
      g_record(p, t1 - t0);
    }
    return double(cycles() - start) / kN;
  }();
  return per_call;
}

void Profiler::print(FILE* out, double wall_seconds) const {
  const double hz = cycles_per_second();
  const uint64_t total = total_cycles();
  std::fprintf(out, "\nprofile: matvec call sites (TSC %.3f GHz, calibrated)\n", hz / 1e9);
  std::fprintf(out, "%-11s %8s %10s %6s %10s %10s %10s %8s %8s  %s\n", "site", "calls", "ms", "share",
               "cyc/call", "min", "max", "GMAC/s", "GB/s", "tiers (calls)");
  for (const SiteStats& s : sites_) {
    if (s.calls == 0) continue;
    const double secs = double(s.cycles) / hz;
    std::fprintf(out, "%-11s %8" PRIu64 " %10.3f %5.1f%% %10.0f %10" PRIu64 " %10" PRIu64 " %8.2f %8.2f  ",
                 s.name.c_str(), s.calls, secs * 1e3, total ? 100.0 * double(s.cycles) / double(total) : 0.0,
                 double(s.cycles) / double(s.calls), s.min_cycles, s.max_cycles,
                 secs > 0 ? double(s.macs) / secs / 1e9 : 0.0, secs > 0 ? double(s.bytes) / secs / 1e9 : 0.0);
    for (size_t v = 0; v < variant_names_.size(); v++)
      if (s.variant_calls[v]) std::fprintf(out, "%s:%" PRIu64 " ", variant_names_[v].c_str(), s.variant_calls[v]);
    std::fputc('\n', out);
  }
  const double overhead_secs = overhead_cycles_per_call() * double(total_calls()) / hz;
  std::fprintf(out, "total: %.3f ms in matvec", double(total) / hz * 1e3);
  if (wall_seconds > 0)
    std::fprintf(out, " (%.1f%% of %.3f s); profiling overhead %.0f cycles/call = %.4f%% of the run",
                 100.0 * double(total) / hz / wall_seconds, wall_seconds, overhead_cycles_per_call(),
                 100.0 * overhead_secs / wall_seconds);
  std::fputc('\n', out);
}

void Profiler::write_json(FILE* f, double wall_seconds) const {
  const double hz = cycles_per_second();
  std::fprintf(f, "{\n  \"tsc_hz\": %.0f,\n  \"wall_seconds\": %.6f,\n", hz, wall_seconds);
  std::fprintf(f, "  \"overhead_cycles_per_call\": %.1f,\n  \"sites\": [", overhead_cycles_per_call());
  bool first = true;
  for (const SiteStats& s : sites_) {
    if (s.calls == 0) continue;
    std::fprintf(f,
                 "%s\n    {\"site\": \"%s\", \"calls\": %" PRIu64 ", \"cycles\": %" PRIu64
                 ", \"min_cycles\": %" PRIu64 ", \"max_cycles\": %" PRIu64 ", \"macs\": %" PRIu64
                 ", \"bytes\": %" PRIu64 ", \"tiers\": {",
                 first ? "" : ",", s.name.c_str(), s.calls, s.cycles, s.min_cycles, s.max_cycles, s.macs,
                 s.bytes);
    first = false;
    bool first_tier = true;
    for (size_t v = 0; v < variant_names_.size(); v++) {
      if (!s.variant_calls[v]) continue;
      std::fprintf(f, "%s\"%s\": {\"calls\": %" PRIu64 ", \"cycles\": %" PRIu64 "}", first_tier ? "" : ", ",
                   variant_names_[v].c_str(), s.variant_calls[v], s.variant_cycles[v]);
      first_tier = false;
    }
    std::fprintf(f, "}}");
  }
  std::fprintf(f, "\n  ]\n}\n");
}

}  // namespace bf::prof
