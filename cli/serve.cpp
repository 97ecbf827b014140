// bareflow serve: the HTTP API of serve/server.h over one model; this file is its command line.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/jit_flags.h"
#include "cli/run.h"
#include "engine/model.h"
#include "engine/transformer.h"
#include "serve/server.h"
#include "state/records.h"
#include "state/store.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow serve [MODEL] [options]\n"
    "  llama-server's HTTP API over MODEL: GET /health, GET /v1/models, POST /v1/completions,\n"
    "  POST /v1/chat/completions (\"stream\": true: server-sent events ending with [DONE]),\n"
    "  POST /completion (llama-server's own), GET /metrics (Prometheus). Concurrent requests\n"
    "  decode as one batch; temperature 0 or a seed gives bareflow generate's text.\n"
    "  MODEL, -m, --model PATH  the model (default as for generate); -z, --tokenizer PATH\n"
    "  --host ADDR              address to listen on (default 127.0.0.1)\n"
    "  --port N                 port (default 8080; 0: any free one, printed on stderr)\n"
    "  --api-key KEY            require \"Authorization: Bearer KEY\" (not on /health)\n"
    "  --chat-template NAME     plain (default), llama2, zephyr or chatml\n"
    "  --parallel N             generation slots, each with a KV cache of the whole context\n"
    "                           (default 4, at most 64); busy slots decode as one batch\n"
    "  --queue N                requests that may wait when every slot is busy (default 16);\n"
    "                           more get 503\n"
    "  --timeout SEC            per read of a request and per write of a response (default 30)\n"
    "  --state FILE, --no-state the persistent store, as for generate: a warm start from it, and the\n"
    "                           run recorded into it when SIGINT or SIGTERM stops the server\n"
    "  -T, --threads N          threads (default: online cores); --isa ISA; --no-prefill; --no-repack\n";

}  // namespace

int cmd_serve(int argc, char** argv) {
  serve::Options o;
  RunFlags r;  // the model and engine flags, as generate's
  std::string state_path = state::default_state_path();
  bool state_named = std::getenv("BAREFLOW_STATE") && *std::getenv("BAREFLOW_STATE"), use_state = true;
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::fputs(jit_usage(), stdout);
      return 0;
    } else if (parse_model_flag(f, a, r)) {
      continue;
    } else if (f == "--host") {
      o.host = a.value(f);
    } else if (f == "--port") {
      o.port = int(parse_int(f, a.value(f), 0, 65535));
    } else if (f == "--api-key") {
      o.api_key = a.value(f);
      if (o.api_key.empty()) fail(f, "the key must not be empty");
    } else if (f == "--chat-template") {
      o.chat_template = serve::parse_chat_template(f, a.value(f));
      o.chat_template_given = true;
    } else if (f == "--parallel") {
      o.parallel = int(parse_int(f, a.value(f), 1, Transformer::kMaxBatch));
    } else if (f == "--queue") {
      o.queue = int(parse_int(f, a.value(f), 0, 100000));
    } else if (f == "--timeout") {
      o.timeout_s = int(parse_int(f, a.value(f), 1, 86400));
    } else if (f == "--state") {
      state_path = a.value(f);
      use_state = state_named = true;
    } else if (f == "--no-state") {
      use_state = false;
    } else if (parse_jit_flag(f, a, &o.jit)) {
      if (f == "--jit" || f.rfind("--jit=", 0) == 0) o.jit_given = true;
      continue;
    } else {
      fail(f, "unknown flag or argument (see bareflow serve --help)");
    }
  }
  o.model_path = r.model_path.empty() ? find_default_model() : r.model_path;
  o.tokenizer_for = [flag = r.tokenizer_path](const Model& m) { return tokenizer_file(m, flag); };
  o.threads = r.threads;
  o.isa = r.isa;
  o.repack = r.repack;
  o.prefill = r.prefill;
  const std::unique_ptr<state::Store> store =
      use_state ? open_store(state_path, state_named, state::Options{}.max_bytes) : nullptr;
  o.store = store.get();
  return serve::run(o);
}

}  // namespace bf::cli
