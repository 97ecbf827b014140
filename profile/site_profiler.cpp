#include "profile/site_profiler.h"

namespace bf::prof {
namespace {
std::vector<std::string> site_names() {
  std::vector<std::string> names;
  for (size_t i = 0; i < kSiteCount; i++) names.emplace_back(site_name(Site(i)));
  for (size_t i = 0; i < kFusionCount; i++) names.emplace_back(fusion_name(Fusion(i)));  // rows after the sites
  return names;
}
}  // namespace

SiteProfiler::SiteProfiler() : profiler_(site_names()) {}

void SiteProfiler::on_fused(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, const float* x,
                            const QuantizedVector* xq, uint64_t cycles) {
  Site sites[kMaxFusionSites];
  const int n = fusion_sites(f, sites);
  uint64_t macs = 0, bytes = 0;
  for (int i = 0; i < n; i++) {
    macs += uint64_t(W[i]->rows) * uint64_t(W[i]->cols);
    bytes += matrix_bytes(*W[i]);
  }
  profiler_.record(kSiteCount + size_t(f), cycles, macs, bytes, variants_ ? variants_->variant_of_fused(f, fn) : 0);
  if (next_) next_->on_fused(f, fn, out, W, x, xq, cycles);
}

}  // namespace bf::prof
