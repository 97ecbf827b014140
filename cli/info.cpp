// bareflow info: what a model file is, without running it.
#include <cstdio>
#include <map>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/model.h"

namespace bf::cli {

int cmd_info(int argc, char** argv) {
  std::string path;
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs("usage: bareflow info MODEL\n"
                 "Prints the format, version, shapes, parameter count, tensor types and the bytes of\n"
                 "weights read per generated token.\n",
                 stdout);
      return 0;
    }
    if (!f.empty() && f[0] == '-') fail(f, "unknown flag (see bareflow info --help)");
    if (!path.empty()) fail(f, "unexpected argument: info takes one model");
    path = f;
  }
  if (path.empty()) fail("info", "missing MODEL (see bareflow info --help)");
  const std::unique_ptr<Model> m = load_model(path);
  const Config& c = m->config;
  // Strings from the command line or the file are escaped: one line each, no terminal controls.
  std::printf("file:            %s (%zu bytes)\n", printable(m->path).c_str(), m->file.size());
  std::printf("format:          %s", format_name(m->format));
  if (m->format == ModelFormat::Gguf) std::printf(" v%d", m->format_version);
  if (!m->format_detail.empty()) std::printf(", %s", printable(m->format_detail).c_str());
  std::printf("\n");
  std::printf("dim:             %d\nhidden_dim:      %d\nn_layers:        %d\n", c.dim, c.hidden_dim, c.n_layers);
  std::printf("n_heads:         %d (head size %d)\nn_kv_heads:      %d\n", c.n_heads, c.head_size(), c.n_kv_heads);
  std::printf("vocab_size:      %d\nseq_len:         %d\n", c.vocab_size, c.seq_len);
  std::printf("norm_eps:        %g\nrope_theta:      %g (%s pairs)\n", double(c.norm_eps), double(c.rope_theta),
              c.rope_style == RopeStyle::Interleaved ? "interleaved" : "half-split");
  std::printf("parameters:      %llu\n", (unsigned long long)m->parameter_count());
  // Tensor types: count matrices per type, embedding and classifier named separately.
  std::map<std::string, int> types;
  for (const LayerWeights& l : m->weights.layers)
    for (const Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) types[dtype_name(w->type)]++;
  std::printf("layer matrices:  ");
  for (const auto& [t, n] : types) std::printf("%d x %s ", n, t.c_str());
  std::printf("\nembedding:       %s\n", dtype_name(m->weights.token_embedding.type));
  std::printf("classifier:      %s%s\n", dtype_name(m->weights.classifier.type),
              m->weights.classifier.data == m->weights.token_embedding.data ? " (shared with embedding)" : "");
  std::printf("tokenizer:       %s\n", m->vocab ? "embedded" : "none (pass -z)");
  std::printf("bytes per token: %llu (%.2f MB of weights read per generated token)\n",
              (unsigned long long)m->bytes_per_token(), double(m->bytes_per_token()) / 1e6);
  return 0;
}

}  // namespace bf::cli
