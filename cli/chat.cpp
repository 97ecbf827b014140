// bareflow chat: a conversation in a terminal, one user turn per line, each reply streamed. The
// history is kept within the context: when it no longer fits, the oldest turns go, with a note.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/isa.h"
#include "cli/jit_flags.h"
#include "cli/run.h"
#include "jit/attach.h"
#include "serve/chat_template.h"
#include "serve/completion.h"
#include "state/records.h"
#include "state/weights_cache.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow chat [MODEL] [-y SYSTEM] [options]\n"
    "  A conversation: one user turn per line on stdin, the reply streamed to stdout (\"User: \" and\n"
    "  \"Assistant: \" are printed when stdin is a terminal). End with end of file (Ctrl-D).\n"
    "  -y, --system TEXT       the system prompt\n"
    "  --chat-template NAME    plain, llama2, zephyr, chatml (default: the GGUF's own, else plain)\n"
    "  -n, --steps N           at most N tokens per reply (default 256)\n"
    "  -s, --seed N            reply k is sampled with seed N + k (default: from the clock)\n"
    "  MODEL/-m, -z, -t, -p, -T, --isa, --no-prefill, --no-repack and the JIT flags: as for generate\n";

}  // namespace

int cmd_chat(int argc, char** argv) {
  RunFlags r;
  std::string system;
  bool template_given = false;
  serve::ChatTemplate tmpl = serve::ChatTemplate::Plain;
  jit::Options jo;
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::fputs(jit_usage(), stdout);
      return 0;
    } else if (f == "-y" || f == "--system") {
      system = a.value(f);
    } else if (f == "--chat-template") {
      tmpl = serve::parse_chat_template(f, a.value(f));
      template_given = true;
    } else if (parse_jit_flag(f, a, &jo) || parse_run_flag(f, a, r)) {
      continue;
    } else {
      fail(f, "unknown flag (see bareflow chat --help)");
    }
  }
  if (r.prompt.size()) fail("-i", "chat takes its turns from stdin, not -i");
  finish_run_flags(r);
  const std::unique_ptr<Model> model = load_model(r.model_path);
  if (r.repack) {
    // Repacked through the copy generate and serve keep beside the default store, when there is
    // one (its folder exists): chat itself keeps no store.
    const std::string state_path = state::default_state_path();
    const std::string dir = state_path.substr(0, state_path.rfind('/') + 1);
    struct stat st;
    const bool have_store = !dir.empty() && stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    state::repack_with_cache(*model, r.model_path, have_store ? state::weights_cache_path(state_path, r.model_path) : "",
                             stderr);
  }
  const Config& c = model->config;
  const std::string tokenizer_path = tokenizer_file(*model, r.tokenizer_path);
  const Tokenizer tokenizer = tokenizer_path.empty() ? Tokenizer::from_vocab(*model->vocab)
                                                     : Tokenizer::from_file(tokenizer_path, c.vocab_size);
  if (!template_given && model->vocab) tmpl = serve::recognize_chat_template(model->vocab->chat_template);
  Transformer transformer(*model, kernels_for(r.isa), r.threads, c.seq_len);
  const std::unique_ptr<jit::Session> session = jit::attach(transformer, jo);
  const int64_t reply_max = r.steps <= 0 ? c.seq_len : r.steps;
  // A turn needs room for a reply: at least a quarter of the context, or the whole -n if less.
  const size_t room = size_t(std::min<int64_t>(reply_max, c.seq_len / 4));
  std::vector<serve::ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  const size_t first_turn = messages.size();
  const bool tty = isatty(0);
  std::string line;
  for (uint64_t turn = 0;; turn++) {
    if (tty) std::fputs("User: ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      turn--;
      continue;
    }
    messages.push_back({"user", line});
    std::vector<int> tokens;
    for (;;) {  // the oldest turns go until the conversation and a reply fit the context
      const std::string prompt = serve::format_chat(tmpl, messages);
      bool fits = false;
      try {
        tokens = tokenizer.encode(prompt, true, false, size_t(c.seq_len));
        fits = tokens.size() + room <= size_t(c.seq_len);
      } catch (const Error&) {
      }
      if (fits) break;
      if (messages.size() - first_turn <= 1) break;
      messages.erase(messages.begin() + long(first_turn), messages.begin() + long(std::min(first_turn + 2, messages.size() - 1)));
      std::fprintf(stderr, "bareflow: chat: the conversation outgrew the context of %d tokens: the oldest turn is dropped\n",
                   c.seq_len);
    }
    if (tokens.empty() || tokens.size() + room > size_t(c.seq_len)) {
      std::fprintf(stderr, "bareflow: chat: this line alone does not leave room for a reply in the context of %d tokens; "
                   "it is skipped\n", c.seq_len);
      messages.pop_back();
      continue;
    }
    serve::Sampling s;
    s.max_tokens = reply_max;
    s.temperature = r.temperature;
    s.top_p = r.topp;
    s.seed = r.seed + turn;
    s.seed_given = true;
    s.stop = serve::chat_stops(tmpl);
    if (tty) std::fputs("Assistant:", stdout);
    const serve::Outcome out = serve::complete(transformer, *model, tokenizer, tokens, s, r.prefill, [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    messages.push_back({"assistant", out.text});
  }
  return 0;
}

}  // namespace bf::cli
