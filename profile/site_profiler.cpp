#include "profile/site_profiler.h"

namespace bf::prof {
namespace {
std::vector<std::string> site_names() {
  std::vector<std::string> names;
  for (size_t i = 0; i < kSiteCount; i++) names.emplace_back(site_name(Site(i)));
  return names;
}
}  // namespace

SiteProfiler::SiteProfiler() : profiler_(site_names()) {}

}  // namespace bf::prof
