// bareflow serve: llama-server's HTTP API (OpenAI-compatible completions and chat, streamed as
// server-sent events) over one model. HTTP is Boost.Beast's (a maintained parser, header-only, so
// it links into the static executable); JSON is nlohmann-json's. See docs/SERVE.md.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "engine/model.h"
#include "jit/options.h"
#include "kernels/dispatch.h"
#include "serve/chat_template.h"

namespace bf::state {
class Store;
}

namespace bf::serve {

struct Options {
  std::string model_path;
  // The tokenizer file for the loaded model ("": the model's own vocabulary); throws bf::Error when
  // there is none (cli: tokenizer_file with -z).
  std::function<std::string(const Model&)> tokenizer_for;
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (the one taken is printed)
  std::string api_key;  // "": no key needed; else "Authorization: Bearer KEY" on every route but /health
  int threads = 1;
  Isa isa = Isa::Scalar;
  bool prefill = true;
  bool repack = true;  // repack_weights after loading
  jit::Options jit;
  bool jit_given = false;  // a --jit flag: the store does not choose the policy then
  // The persistent store (generate's): a warm start from it, and at SIGINT/SIGTERM the run's outcome
  // recorded into it. Null: none. Must outlive run().
  state::Store* store = nullptr;
  bool chat_template_given = false;
  ChatTemplate chat_template = ChatTemplate::Plain;
  // Generation slots (1..Transformer::kMaxBatch), each with a KV cache of the whole context: the
  // busy ones decode as one batch.
  int parallel = 4;
  int queue = 16;             // requests waiting for a slot when all are busy; more get 503
  int max_connections = 256;  // open connections; more are answered 503 and closed
  size_t max_body = 1 << 20;  // request bodies above it get 413
  int timeout_s = 30;         // reading a request, writing a response chunk: slower clients are dropped
};

// Listens, then loads the model (/health says 503 until it is loaded) and serves until SIGINT or
// SIGTERM, which let the running generation end, record the run in the store, and exit 0.
// Throws bf::Error for a bad address, a port in use, or a model that does not load.
int run(const Options& o);

}  // namespace bf::serve
