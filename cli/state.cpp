// bareflow state: what the persistent store holds (show), whether it is intact (verify), forget
// (clear), and the run-by-run record (report, with an SVG plot).
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "state/records.h"
#include "state/store.h"
#include "state/weights_cache.h"

namespace bf::cli {

namespace {

constexpr char kUsage[] =
    "usage: bareflow state show [--json]        models, runs, sites and tiers, converged or not, size\n"
    "       bareflow state verify               exit 0, or one line per problem and exit 2\n"
    "       bareflow state clear [--model M]    forget everything (repacked weights too), or one model\n"
    "                                           (file name or hash)\n"
    "       bareflow state report [--json] [--svg FILE]\n"
    "                                           one record per run; --svg plots tok/s and time to first token\n"
    "Every command takes --state FILE (default: $BAREFLOW_STATE, else $XDG_CACHE_HOME/bareflow/state.bfs,\n"
    "else ~/.cache/bareflow/state.bfs).\n";

struct ModelView {
  std::string hash;
  state::ModelState m;
  size_t variants = 0;
  uint64_t variant_bytes = 0;
  std::vector<state::RunRecord> runs;
};

// Every model with its runs and variants; a record that does not decode is a problem.
std::vector<ModelView> read_models(const state::Store& s, std::vector<std::string>* problems) {
  std::map<std::string, ModelView> by_hash;
  for (const state::Entry* e : s.all(state::Kind::Model)) {
    const std::string hash = e->key.substr(e->key.find('/') + 1);
    try {
      ModelView v;
      v.hash = hash;
      v.m = state::decode_model_state(e->value, s.path() + ": " + e->key);
      by_hash[hash] = std::move(v);
    } catch (const Error& err) {
      problems->push_back(err.what());
    }
  }
  for (const state::Entry* e : s.all(state::Kind::Run)) {
    const size_t a = e->key.find('/') + 1, b = e->key.find('/', a);
    const auto it = by_hash.find(e->key.substr(a, b - a));
    try {
      const state::RunRecord r = state::decode_run(e->value, s.path() + ": " + e->key);
      if (it != by_hash.end()) it->second.runs.push_back(r);
    } catch (const Error& err) {
      problems->push_back(err.what());
    }
  }
  for (const state::Entry* e : s.all(state::Kind::Variant)) {
    const size_t a = e->key.find('/') + 1, b = e->key.find('/', a);
    const auto it = by_hash.find(e->key.substr(a, b - a));
    if (it == by_hash.end()) continue;
    it->second.variants++;
    it->second.variant_bytes += e->value.size();
  }
  std::vector<ModelView> out;
  for (auto& [h, v] : by_hash) out.push_back(std::move(v));
  return out;
}

int show(const state::Store& s, bool json) {
  std::vector<std::string> problems;
  const std::vector<ModelView> models = read_models(s, &problems);
  if (json) {
    std::printf("{\"state\": %s, \"generation\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"models\": [", state::json_string(s.path()).c_str(),
                s.generation(), s.file_bytes());
    for (size_t i = 0; i < models.size(); i++) {
      const ModelView& v = models[i];
      std::printf("%s{\"hash\": \"%s\", \"model\": %s, \"runs\": %" PRIu64 ", \"converged\": %s, \"moving\": %s, "
                  "\"variants\": %zu, \"variant_bytes\": %" PRIu64 ", \"cpu\": %s, \"sites\": [",
                  i ? ", " : "", v.hash.c_str(), state::json_string(v.m.file_name).c_str(), v.m.runs,
                  state::converged(v.m) ? "true" : "false", state::json_string(v.m.moving).c_str(), v.variants, v.variant_bytes,
                  state::json_string(v.m.cpu.substr(0, v.m.cpu.find(' '))).c_str());
      for (size_t j = 0; j < v.m.sites.size(); j++) {
        const state::SiteRecord& r = v.m.sites[j];
        std::printf("%s{\"site\": %s, \"tier\": %s, \"calls\": %" PRIu64 ", \"cycles\": %" PRIu64 ", \"spec\": %s}",
                    j ? ", " : "", state::json_string(r.name).c_str(), state::json_string(r.tier).c_str(), r.calls, r.cycles,
                    state::json_string(r.spec).c_str());
      }
      std::printf("]}");
    }
    std::printf("]}\n");
  } else {
    std::printf("state %s: generation %" PRIu64 ", %zu model%s, %" PRIu64 " bytes\n", s.path().c_str(), s.generation(),
                models.size(), models.size() == 1 ? "" : "s", s.file_bytes());
    if (const state::WeightsCacheFiles w = state::weights_cache_files(s.path(), false); w.files > 0)
      std::printf("repacked weights: %zu file%s, %" PRIu64 " bytes (beside the store, in repacked/)\n", w.files,
                  w.files == 1 ? "" : "s", w.bytes);
    for (const ModelView& v : models) {
      const std::string status = state::converged(v.m) ? "converged"
                                 : v.m.moving.empty()  ? "not converged yet (stable for " +
                                                            std::to_string(v.m.stable_runs) + " run)"
                                                       : "still moving: " + v.m.moving;
      std::printf("model %s  %s  runs %" PRIu64 "  %s  %zu variants (%" PRIu64 " bytes of code)\n", v.hash.c_str(),
                  v.m.file_name.c_str(), v.m.runs, status.c_str(), v.variants, v.variant_bytes);
      if (!v.m.cpu.empty()) std::printf("  code for %s\n", v.m.cpu.substr(0, v.m.cpu.find(' ')).c_str());
      for (const state::SiteRecord& r : v.m.sites)
        std::printf("  %-10s %-5s %12" PRIu64 " calls %14.0f cycles/call  %s\n", r.name.c_str(), r.tier.c_str(), r.calls,
                    r.calls ? double(r.cycles) / double(r.calls) : 0.0, r.spec.c_str());
    }
  }
  for (const std::string& p : problems) std::fprintf(stderr, "bareflow: %s\n", p.c_str());
  return problems.empty() ? 0 : 2;
}

int verify(const state::Store& s) {
  std::vector<std::string> problems = s.problems();
  const std::vector<ModelView> models = read_models(s, &problems);
  for (const std::string& p : problems) std::fprintf(stderr, "bareflow: %s\n", p.c_str());
  if (!problems.empty()) return 2;
  size_t variants = 0, runs = 0;
  for (const ModelView& v : models) variants += v.variants, runs += v.runs.size();
  std::printf("state %s: ok (generation %" PRIu64 ", %zu models, %zu runs, %zu variants, %" PRIu64 " bytes)\n",
              s.path().c_str(), s.generation(), models.size(), runs, variants, s.file_bytes());
  return 0;
}

int clear(state::Store& s, const std::string& model) {
  std::vector<std::string> problems;
  size_t n = 0;
  for (const ModelView& v : read_models(s, &problems)) {
    if (!model.empty() && model != v.hash && model != v.m.file_name) continue;
    s.erase(state::Kind::Model, state::model_key(v.hash));
    s.erase_all(state::Kind::Run, "run/" + v.hash + "/");
    s.erase_all(state::Kind::Variant, state::variant_prefix(v.hash));
    n++;
  }
  if (model.empty())  // everything, including records that no longer decode
    for (state::Kind k : {state::Kind::Model, state::Kind::Run, state::Kind::Variant}) s.erase_all(k, "");
  else if (n == 0)
    fail(model, "no such model in " + s.path());
  s.commit();
  std::printf("state %s: cleared %zu model%s\n", s.path().c_str(), n, n == 1 ? "" : "s");
  // The repacked weights are kept per model file, not per model record: only a full clear takes them.
  if (model.empty())
    if (const state::WeightsCacheFiles w = state::weights_cache_files(s.path(), true); w.files > 0)
      std::printf("removed %zu repacked-weights file%s (%" PRIu64 " bytes)\n", w.files, w.files == 1 ? "" : "s", w.bytes);
  return 0;
}

// Decode tok/s (top) and time to first token (bottom) against the run number, one line per model.
void write_svg(const std::string& path, const std::vector<ModelView>& models) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) fail(path, "cannot write the plot");
  const int W = 720, H = 520, L = 70, R = 20, T = 40, panel = 190, gap = 60;
  uint64_t max_run = 1;
  double max_tok = 1, max_ttft = 0.001;
  for (const ModelView& v : models)
    for (const state::RunRecord& r : v.runs) {
      max_run = std::max(max_run, r.run);
      max_tok = std::max(max_tok, r.decode_tok_s);
      max_ttft = std::max(max_ttft, r.time_to_first_token_s);
    }
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
  std::fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\">BareFlow runs: what the store makes of each run</text>\n", L);
  auto x_of = [&](uint64_t run) { return L + double(run - (max_run > 1 ? 1 : 0)) * (W - L - R) / double(max_run > 1 ? max_run - 1 : 1); };
  for (int p = 0; p < 2; p++) {
    const int top = T + p * (panel + gap);
    const double ymax = p == 0 ? max_tok * 1.1 : max_ttft * 1.1;
    std::fprintf(f, "<text x=\"10\" y=\"%d\" transform=\"rotate(-90 10 %d)\" text-anchor=\"middle\" dy=\"10\">%s</text>\n",
                 top + panel / 2, top + panel / 2, p == 0 ? "decode tok/s" : "time to first token (s)");
    std::fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", L, top, W - L - R, panel);
    for (int t = 0; t <= 4; t++) {
      const double y = top + panel - t * panel / 4.0;
      std::fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.1f\" "
                   "text-anchor=\"end\" dy=\"4\">%.3g</text>\n", L, W - R, y, y, L - 6, y, ymax * t / 4);
    }
    for (uint64_t run = 1; run <= max_run; run++)
      std::fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%" PRIu64 "</text>\n", x_of(run), top + panel + 16, run);
    std::fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">run</text>\n", (L + W - R) / 2, top + panel + 32);
    for (size_t i = 0; i < models.size(); i++) {
      std::string pts;
      for (const state::RunRecord& r : models[i].runs) {
        const double v = p == 0 ? r.decode_tok_s : r.time_to_first_token_s;
        char b[64];
        std::snprintf(b, sizeof b, "%.1f,%.1f ", x_of(r.run), top + panel - v / ymax * panel);
        pts += b;
        std::fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x_of(r.run),
                     top + panel - v / ymax * panel, colors[i % 6]);
      }
      std::fprintf(f, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", pts.c_str(), colors[i % 6]);
    }
  }
  for (size_t i = 0; i < models.size(); i++) {
    std::string name;
    for (char c : models[i].m.file_name) name += c == '<' ? std::string("&lt;") : c == '&' ? std::string("&amp;") : std::string(1, c);
    std::fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", W - R - 220, T + 16 + int(i) * 16, colors[i % 6], name.c_str());
  }
  std::fprintf(f, "</svg>\n");
  if (std::fclose(f) != 0) fail(path, "cannot write the plot");
}

int report(const state::Store& s, bool json, const std::string& svg) {
  std::vector<std::string> problems;
  std::vector<ModelView> models = read_models(s, &problems);
  for (ModelView& v : models)
    std::sort(v.runs.begin(), v.runs.end(), [](const auto& a, const auto& b) { return a.run < b.run; });
  if (json) {
    std::printf("[");
    bool first = true;
    for (const ModelView& v : models)
      for (const state::RunRecord& r : v.runs) {
        std::printf("%s\n  %s", first ? "" : ",", state::run_json(r).c_str());
        first = false;
      }
    std::printf("\n]\n");
  } else {
    std::printf("| run | model | compiles | loaded | first token s | to top tier s | decode tok/s | compile ms | converged | state bytes |\n"
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
    for (const ModelView& v : models)
      for (const state::RunRecord& r : v.runs)
        std::printf("| %" PRIu64 " | %s | %" PRIu64 " | %" PRIu64 " | %.3f | %.3f | %.1f | %.1f | %s | %" PRIu64 " |\n", r.run,
                    r.model.c_str(), r.compiles, r.loaded, r.time_to_first_token_s, r.time_to_top_tier_s, r.decode_tok_s,
                    r.compile_ms, r.converged ? "yes" : "no", r.state_bytes);
  }
  if (!svg.empty()) write_svg(svg, models);
  for (const std::string& p : problems) std::fprintf(stderr, "bareflow: %s\n", p.c_str());
  return problems.empty() ? 0 : 2;
}

}  // namespace

int cmd_state(int argc, char** argv) {
  if (argc < 2) fail("state", "missing command: show, verify, clear or report (see bareflow state --help)");
  const std::string what = argv[1];
  if (what == "-h" || what == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (what != "show" && what != "verify" && what != "clear" && what != "report")
    fail(what, "unknown state command (show, verify, clear, report)");
  std::string path = state::default_state_path(), model, svg;
  bool json = false;
  Args a{argc, argv, 2};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "--state") path = a.value(f);
    else if (f.rfind("--state=", 0) == 0) path = f.substr(8);
    else if (f == "--json" && (what == "show" || what == "report")) json = true;
    else if (f == "--model" && what == "clear") model = a.value(f);
    else if (f == "--svg" && what == "report") svg = a.value(f);
    else fail(f, "unknown flag for state " + what + " (see bareflow state --help)");
  }
  if (path.empty()) fail("--state", "no store given and neither BAREFLOW_STATE, XDG_CACHE_HOME nor HOME is set");
  state::Options o;
  o.read_only = what != "clear";
  state::Store s = state::Store::open(path, o);
  if (what == "verify") return verify(s);
  for (const std::string& p : s.problems()) std::fprintf(stderr, "bareflow: %s\n", p.c_str());
  if (what == "show") return show(s, json);
  if (what == "clear") return clear(s, model);
  return report(s, json, svg);
}

}  // namespace bf::cli
