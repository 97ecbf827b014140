#include "serve/server.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "engine/error.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"
#include "jit/attach.h"
#include "native/cpu_features.h"
#include "state/model_store.h"
#include "state/store.h"
#include "state/weights_cache.h"
#include "serve/completion.h"

namespace bf::serve {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A request the API refuses: its HTTP status and message (OpenAI's error shape).
struct HttpError {
  int status;
  std::string message;
};

json error_body(int status, const std::string& message) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return {{"error", {{"message", message}, {"type", type}, {"code", status}}}};
}

void read_params(const json& body, const char* max_key, Sampling& p) {
  if (auto it = body.find(max_key); it != body.end()) {
    if (!it->is_number_integer()) throw HttpError{400, std::string("'") + max_key + "' must be an integer"};
    p.max_tokens = it->get<int64_t>();
    if (p.max_tokens < -1 || (p.max_tokens == -1 && std::string(max_key) != "n_predict"))
      throw HttpError{400, std::string("'") + max_key + "' must not be negative"};
  }
  if (auto it = body.find("temperature"); it != body.end()) {
    if (!it->is_number()) throw HttpError{400, "'temperature' must be a number"};
    const double t = it->get<double>();
    if (!(t >= 0 && t <= 100)) throw HttpError{400, "'temperature' must be in [0, 100]"};
    p.temperature = float(t);
  }
  if (auto it = body.find("top_p"); it != body.end()) {
    if (!it->is_number()) throw HttpError{400, "'top_p' must be a number"};
    const double t = it->get<double>();
    if (!(t >= 0 && t <= 1)) throw HttpError{400, "'top_p' must be in [0, 1]"};
    p.top_p = float(t);
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) throw HttpError{400, "'seed' must be a non-negative integer"};
    p.seed = it->get<uint64_t>();
    p.seed_given = true;
  }
  if (auto it = body.find("stream"); it != body.end()) {
    if (!it->is_boolean()) throw HttpError{400, "'stream' must be true or false"};
    p.stream = it->get<bool>();
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    const json list = it->is_string() ? json::array({*it}) : *it;
    if (!list.is_array() || list.size() > 4) throw HttpError{400, "'stop' must be a string or up to 4 strings"};
    for (const json& s : list) {
      if (!s.is_string() || s.get<std::string>().empty()) throw HttpError{400, "'stop' strings must be non-empty strings"};
      p.stop.push_back(s.get<std::string>());
    }
  }
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

// One connection's socket, driven by its own io_context: asynchronous operations run to
// completion one at a time, so that Beast's timeouts (which only asynchronous operations have)
// bound every read and write.
class Connection {
 public:
  Connection(std::shared_ptr<net::io_context> ioc, tcp::socket socket, int timeout_s)
      : ioc_(std::move(ioc)), stream_(std::move(socket)), timeout_(timeout_s) {}

  template <class Start>
  beast::error_code run(Start start) {
    beast::error_code result = net::error::operation_aborted;
    stream_.expires_after(std::chrono::seconds(timeout_));
    start([&](beast::error_code ec, std::size_t) { result = ec; });
    ioc_->restart();
    ioc_->run();
    return result;
  }
  beast::error_code read(http::request_parser<http::string_body>& p) {
    return run([&](auto done) { http::async_read(stream_, buffer_, p, done); });
  }
  beast::error_code write(http::response<http::string_body>& r) {
    return run([&](auto done) { http::async_write(stream_, r, done); });
  }
  beast::error_code write_header(http::response_serializer<http::empty_body>& s) {
    return run([&](auto done) { http::async_write_header(stream_, s, done); });
  }
  // One HTTP/1.1 chunk ("" ends the body).
  beast::error_code write_chunk(const std::string& data) {
    char head[24];
    std::snprintf(head, sizeof head, "%zx\r\n", data.size());
    out_ = head + data + "\r\n";  // "" makes "0\r\n\r\n": the last chunk, no trailers
    return run([&](auto done) { net::async_write(stream_, net::buffer(out_), done); });
  }
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
  // Whether the client has closed its end (or the connection broke) while it waits for an answer.
  bool peer_closed() {
    pollfd p{stream_.socket().native_handle(), POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return (p.revents & POLLIN) && recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

 private:
  std::shared_ptr<net::io_context> ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string out_;
  int timeout_;
};

// A completion request, between its connection's thread and the engine thread. All but
// `cancelled` is guarded by Server::mu_.
struct Job {
  std::vector<int> tokens;
  Sampling sampling;
  std::atomic<bool> cancelled{false};  // the client went away: the engine frees its slot
  std::string pending;                 // text made and not yet written
  bool done = false;
  Outcome outcome;  // once done
  std::condition_variable cv;
};

// A KV cache slot of the transformer and the completion in it (null: free). Engine thread only.
struct Slot {
  std::shared_ptr<Job> job;
  std::unique_ptr<Completion> completion;
};

class Server {
 public:
  explicit Server(const Options& o) : o_(o) {}
  int run();

 private:
  void load();
  void serve_connection(std::shared_ptr<net::io_context> ioc, tcp::socket socket);
  // Answers one request; false: close the connection.
  bool handle(Connection& c, const http::request<http::string_body>& req);
  bool respond(Connection& c, const http::request<http::string_body>& req, int status, const std::string& body,
               const char* type = "application/json");
  bool completion(Connection& c, const http::request<http::string_body>& req, const std::string& route);
  std::string metrics();
  // The engine thread: admits queued jobs into free slots and runs every busy slot's next token
  // (or prompt tokens) as one batch, until stopping with no slot busy.
  void engine();

  const Options& o_;
  std::atomic<bool> ready_{false};
  std::string model_name_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Transformer> transformer_;
  std::unique_ptr<state::ModelStore> model_store_;
  jit::Options jit_options_;  // o_.jit, with the store's cache and policy
  std::unique_ptr<jit::Session> jit_;
  ChatTemplate template_ = ChatTemplate::Plain;
  // Waits for SIGINT/SIGTERM (blocked in every thread), then stops: the run goes into the store.
  void stop_on_signal(sigset_t signals);
  std::mutex mu_;  // the queue, the jobs, busy_, stopping_
  std::deque<std::shared_ptr<Job>> queue_;
  std::condition_variable work_;  // the engine waits on it for jobs
  std::condition_variable idle_;  // stop_on_signal waits on it for no busy slot
  int busy_ = 0;                  // slots with a job
  bool stopping_ = false;         // no job is admitted any more
  std::vector<Slot> slots_;       // the engine thread's
  std::atomic<int> connections_{0};
  std::atomic<uint64_t> requests_{0}, errors_{0}, prompt_tokens_{0}, predicted_{0}, predicted_us_{0}, next_id_{1};
};

void Server::load() {
  try {
    model_ = load_model(o_.model_path);
    if (o_.repack)  // through the copy kept beside the store, as generate does
      state::repack_with_cache(*model_, o_.model_path,
                               o_.store ? state::weights_cache_path(o_.store->path(), o_.model_path) : "", stderr);
    const Config& c = model_->config;
    const std::string tokenizer_path = o_.tokenizer_for(*model_);
    tokenizer_ = std::make_unique<Tokenizer>(tokenizer_path.empty() ? Tokenizer::from_vocab(*model_->vocab, o_.model_path)
                                                                    : Tokenizer::from_file(tokenizer_path, c.vocab_size));
    transformer_ = std::make_unique<Transformer>(*model_, kernels_for(o_.isa), o_.threads, c.seq_len, o_.parallel);
    slots_.resize(size_t(o_.parallel));
    jit_options_ = o_.jit;
    if (o_.store) {
      model_store_ = std::make_unique<state::ModelStore>(*o_.store, state::model_identity(*model_), stderr);
      if (!o_.jit_given && jit::available()) jit_options_.policy = jit::Policy::Tiered;
      jit_options_.cache = model_store_.get();
    }
    jit_ = jit::attach(*transformer_, jit_options_);
    template_ = o_.chat_template_given || !model_->vocab ? o_.chat_template
                                                          : recognize_chat_template(model_->vocab->chat_template);
    model_name_ = o_.model_path.substr(o_.model_path.rfind('/') + 1);
  } catch (const Error& e) {
    std::fprintf(stderr, "bareflow: %s\n", e.what());
    std::fflush(stderr);
    _exit(2);  // the listener is up on another thread: nothing else to unwind
  }
  ready_ = true;
  std::fprintf(stderr, "bareflow: serve: %s loaded (%d slots)\n", model_name_.c_str(), o_.parallel);
  engine();
}

void Server::engine() {
  std::vector<BatchToken> batch;
  std::vector<int> rows;  // the slot of each logits row
  std::vector<std::string> texts(slots_.size());
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (size_t i = 0; i < slots_.size() && !stopping_ && !queue_.empty(); i++) {
        if (slots_[i].job) continue;
        slots_[i].job = std::move(queue_.front());
        queue_.pop_front();
        slots_[i].completion = std::make_unique<Completion>(*model_, *tokenizer_, std::move(slots_[i].job->tokens),
                                                            slots_[i].job->sampling);
        busy_++;
      }
      if (busy_ == 0) {
        idle_.notify_all();
        work_.wait(lock, [&] { return !stopping_ && !queue_.empty(); });
        continue;
      }
    }
    // The batch: every decoding slot's next token first, then prompt tokens up to the batch size
    // (a prompt that ends in it also gets its first token with logits).
    batch.clear();
    rows.clear();
    for (size_t i = 0; i < slots_.size(); i++) {
      Slot& s = slots_[i];
      if (!s.job) continue;
      if (s.job->cancelled) s.completion->abort();
      if (!s.completion->done() && (!o_.prefill || s.completion->prompt_ahead() == 0)) {
        batch.push_back({s.completion->token(), s.completion->pos(), int(i), true});
        rows.push_back(int(i));
      }
    }
    for (size_t i = 0; i < slots_.size() && o_.prefill; i++) {
      Completion* c = slots_[i].job ? slots_[i].completion.get() : nullptr;
      const int room = Transformer::kMaxBatch - int(batch.size());
      if (!c || c->done() || c->prompt_ahead() == 0 || room == 0) continue;
      const int n = std::min(c->prompt_ahead(), room);
      for (int t = 0; t < n; t++) batch.push_back({c->prompt_at_pos()[t], c->pos() + t, int(i), false});
      c->skip(n);
      if (!c->done() && c->prompt_ahead() == 0 && n < room) {
        batch.push_back({c->token(), c->pos(), int(i), true});
        rows.push_back(int(i));
      }
    }
    // One decoding slot alone runs forward(): the JIT's kernels and the profiler, as generate.
    float* logits = nullptr;
    if (batch.size() == 1 && batch[0].logits) logits = transformer_->forward(batch[0].token, batch[0].pos, batch[0].slot);
    else if (!batch.empty()) logits = transformer_->forward_batch(batch.data(), int(batch.size()));
    for (size_t r = 0; r < rows.size(); r++)
      texts[size_t(rows[r])] = slots_[size_t(rows[r])].completion->step(logits + r * size_t(model_->config.vocab_size));

    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < slots_.size(); i++) {
      Slot& s = slots_[i];
      if (!s.job) continue;
      const bool done = s.completion->done();
      if (!texts[i].empty() || done) {
        s.job->pending += texts[i];
        texts[i].clear();
        if (done) {
          s.job->outcome = s.completion->outcome();
          s.job->done = true;
          const Outcome& out = s.job->outcome;
          prompt_tokens_ += uint64_t(out.prompt_tokens);
          predicted_ += uint64_t(out.completion_tokens);
          predicted_us_ += uint64_t(out.seconds * 1e6);
        }
        s.job->cv.notify_one();
      }
      if (done) {
        s.job.reset();
        s.completion.reset();
        busy_--;
      }
    }
  }
}

bool Server::respond(Connection& c, const http::request<http::string_body>& req, int status, const std::string& body,
                     const char* type) {
  http::response<http::string_body> res{http::int_to_status(unsigned(status)), req.version()};
  res.set(http::field::server, "bareflow");
  res.set(http::field::content_type, type);
  res.keep_alive(req.keep_alive() && status < 500);
  res.body() = body;
  res.prepare_payload();
  if (status >= 400) errors_++;
  return !c.write(res) && res.keep_alive();
}

bool Server::completion(Connection& c, const http::request<http::string_body>& req, const std::string& route) {
  const json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) throw HttpError{400, "the body is not a JSON object"};
  const bool chat = route == "/v1/chat/completions", native = route == "/completion";
  Sampling p;
  if (native) p.max_tokens = -1;
  else if (!chat) p.max_tokens = 16;  // OpenAI's default for completions
  read_params(body, native ? "n_predict" : "max_tokens", p);
  if (chat) {
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) throw HttpError{400, "'messages' must be a non-empty array"};
    std::vector<ChatMessage> messages;
    for (const json& m : *it) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
          !m["content"].is_string())
        throw HttpError{400, "every message must be an object with string 'role' and 'content'"};
      const std::string role = m["role"];
      if (role != "system" && role != "user" && role != "assistant")
        throw HttpError{400, "a message's role must be system, user or assistant, not '" + role + "'"};
      messages.push_back({role, m["content"]});
    }
    p.prompt = format_chat(template_, messages);
    // The end of the assistant's turn ends the reply (up to 4 stop strings in all).
    for (const std::string& s : chat_stops(template_))
      if (p.stop.size() < 4 && std::find(p.stop.begin(), p.stop.end(), s) == p.stop.end()) p.stop.push_back(s);
  } else {
    auto it = body.find("prompt");
    if (it == body.end()) throw HttpError{400, "'prompt' is missing"};
    if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) p.prompt = (*it)[0];
    else if (it->is_string()) p.prompt = *it;
    else throw HttpError{400, "'prompt' must be a string"};
  }
  const int ctx = model_->config.seq_len;
  std::vector<int> tokens;
  try {
    tokens = tokenizer_->encode(p.prompt, true, false, size_t(ctx));
  } catch (const Error&) {
    throw HttpError{400, "the prompt is longer than the context of " + std::to_string(ctx) + " tokens"};
  }
  // A place in the slots or in the bounded queue behind them, or 503.
  auto job = std::make_shared<Job>();
  job->tokens = std::move(tokens);
  job->sampling = p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw HttpError{503, "the server is stopping"};
    if (int(queue_.size()) + busy_ >= o_.parallel + o_.queue)
      throw HttpError{503, "the server is busy (" + std::to_string(o_.parallel) + " slots busy and " +
                               std::to_string(o_.queue) + " requests already waiting)"};
    queue_.push_back(job);
    work_.notify_one();
  }
  // However this returns, a job not done is given up: out of the queue, or its slot freed.
  struct GiveUp {
    Server& server;
    const std::shared_ptr<Job>& job;
    ~GiveUp() {
      std::lock_guard<std::mutex> lock(server.mu_);
      if (job->done) return;
      job->cancelled = true;
      auto& q = server.queue_;
      q.erase(std::remove(q.begin(), q.end(), job), q.end());
    }
  } give_up{*this, job};

  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id_++);
  const long created = long(std::time(nullptr));
  const char* object = chat ? "chat.completion" : "text_completion";
  std::function<bool(const std::string&)> emit = [](const std::string&) { return true; };
  http::response<http::empty_body> head{http::status::ok, req.version()};
  http::response_serializer<http::empty_body> serializer{head};
  bool streaming = false;
  if (p.stream) {
    head.set(http::field::server, "bareflow");
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    head.chunked(true);
    head.keep_alive(false);
    if (c.write_header(serializer)) return false;
    streaming = true;
    emit = [&](const std::string& piece) {
      json chunk;
      if (native) chunk = {{"content", piece}, {"stop", false}};
      else if (chat)
        chunk = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model_name_},
                 {"choices", json::array({{{"index", 0}, {"delta", {{"content", piece}}}, {"finish_reason", nullptr}}})}};
      else
        chunk = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model_name_},
                 {"choices", json::array({{{"index", 0}, {"text", piece}, {"finish_reason", nullptr}}})}};
      return !c.write_chunk(sse(chunk));
    };
  }
  Outcome out;
  for (;;) {
    std::string text;
    bool done;
    {
      std::unique_lock<std::mutex> lock(mu_);
      job->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return !job->pending.empty() || job->done; });
      text.swap(job->pending);
      done = job->done;
      if (done) out = job->outcome;
    }
    if (!text.empty() && !emit(text)) return false;  // the client is gone: its slot is freed at once
    if (done) break;
    if (text.empty() && c.peer_closed()) return false;
  }
  const json usage = {{"prompt_tokens", out.prompt_tokens},
                      {"completion_tokens", out.completion_tokens},
                      {"total_tokens", out.prompt_tokens + out.completion_tokens}};
  json final;
  if (native) {
    final = {{"content", streaming ? "" : out.text},
             {"stop", true},
             {"model", model_name_},
             {"tokens_predicted", out.completion_tokens},
             {"tokens_evaluated", out.prompt_tokens},
             {"stopped_eos", out.finish == "stop" && out.stopped_by.empty()},
             {"stopped_word", !out.stopped_by.empty()},
             {"stopped_limit", out.finish == "length"},
             {"stopping_word", out.stopped_by},
             {"usage", usage}};
  } else if (streaming) {
    json choice = {{"index", 0}, {"finish_reason", out.finish}};
    if (chat) choice["delta"] = json::object();
    else choice["text"] = "";
    final = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
             {"model", model_name_}, {"choices", json::array({choice})}, {"usage", usage}};
  } else {
    json choice = {{"index", 0}, {"finish_reason", out.finish}};
    if (chat) choice["message"] = {{"role", "assistant"}, {"content", out.text}};
    else {
      choice["text"] = out.text;
      choice["logprobs"] = nullptr;
    }
    final = {{"id", id}, {"object", object}, {"created", created}, {"model", model_name_},
             {"choices", json::array({choice})}, {"usage", usage}};
  }
  if (!streaming) return respond(c, req, 200, final.dump());
  if (c.write_chunk(sse(final))) return false;
  if (!native && c.write_chunk("data: [DONE]\n\n")) return false;
  c.write_chunk("");
  return false;
}

std::string Server::metrics() {
  std::string m;
  const auto metric = [&](const char* name, const char* type, const char* help, double v) {
    char line[256];
    std::snprintf(line, sizeof line, "# HELP bareflow_%s %s\n# TYPE bareflow_%s %s\nbareflow_%s %.17g\n", name, help, name,
                  type, name, v);
    m += line;
  };
  const double secs = double(predicted_us_.load()) / 1e6;
  metric("requests_total", "counter", "HTTP requests answered.", double(requests_.load()));
  metric("errors_total", "counter", "Requests answered with a 4xx or 5xx status.", double(errors_.load()));
  metric("prompt_tokens_total", "counter", "Prompt tokens processed.", double(prompt_tokens_.load()));
  metric("tokens_predicted_total", "counter", "Tokens generated.", double(predicted_.load()));
  metric("tokens_predicted_seconds_total", "counter", "Seconds spent generating.", secs);
  metric("predicted_tokens_seconds", "gauge", "Average generation throughput (tokens/s).",
         secs > 0 ? double(predicted_.load()) / secs : 0);
  int busy, waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy = busy_;
    waiting = int(queue_.size());
  }
  metric("requests_processing", "gauge", "Requests being generated (slots busy).", double(busy));
  metric("requests_deferred", "gauge", "Requests waiting for a slot.", double(waiting));
  metric("slots_total", "gauge", "Generation slots.", double(o_.parallel));
  return m;
}

bool Server::handle(Connection& c, const http::request<http::string_body>& req) {
  requests_++;
  std::string target(req.target());
  const std::string route = target.substr(0, target.find('?'));
  struct Route {
    const char* path;
    http::verb verb;
  };
  static const Route routes[] = {{"/health", http::verb::get},         {"/v1/models", http::verb::get},
                                 {"/metrics", http::verb::get},        {"/completion", http::verb::post},
                                 {"/v1/completions", http::verb::post}, {"/v1/chat/completions", http::verb::post}};
  const Route* r = nullptr;
  for (const Route& x : routes)
    if (route == x.path) r = &x;
  try {
    if (!r) throw HttpError{404, "no route " + route};
    if (req.method() != r->verb)
      throw HttpError{405, std::string(req.method_string()) + " is not allowed on " + route + " (only " +
                               std::string(http::to_string(r->verb)) + ")"};
    if (route == "/health")
      return ready_ ? respond(c, req, 200, R"({"status":"ok"})") : respond(c, req, 503, R"({"status":"loading model"})");
    if (!o_.api_key.empty() && req[http::field::authorization] != "Bearer " + o_.api_key)
      throw HttpError{401, "a valid API key is needed: Authorization: Bearer KEY"};
    if (!ready_) throw HttpError{503, "the model is loading"};
    if (route == "/v1/models")
      return respond(c, req, 200,
                     json{{"object", "list"},
                          {"data", json::array({{{"id", model_name_}, {"object", "model"}, {"created", 0},
                                                 {"owned_by", "bareflow"}}})}}
                         .dump());
    if (route == "/metrics") return respond(c, req, 200, metrics(), "text/plain; version=0.0.4");
    return completion(c, req, route);
  } catch (const HttpError& e) {
    return respond(c, req, e.status, error_body(e.status, e.message).dump());
  }
}

void Server::serve_connection(std::shared_ptr<net::io_context> ioc, tcp::socket socket) {
  Connection c(std::move(ioc), std::move(socket), o_.timeout_s);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(o_.max_body);
    parser.header_limit(16 * 1024);
    const beast::error_code ec = c.read(parser);
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::connection_reset ||
        ec == net::error::eof)
      break;
    if (ec) {
      // Not HTTP, or over a limit: one error response, then the connection goes.
      const int status = ec == http::error::body_limit ? 413 : ec == http::error::header_limit ? 431 : 400;
      http::request<http::string_body> req{http::verb::get, "/", 11};
      req.keep_alive(false);
      errors_++;
      respond(c, req, status, error_body(status, "bad request: " + ec.message()).dump());
      break;
    }
    if (!handle(c, parser.get())) break;
  }
  c.close();
}

void Server::stop_on_signal(sigset_t signals) {
  int sig = 0;
  sigwait(&signals, &sig);
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;  // running generations end first; no queued one starts
  idle_.wait(lock, [&] { return busy_ == 0; });
  if (ready_ && jit_) jit_->finish(stderr);
  if (ready_ && model_store_) {
    const double secs = double(predicted_us_.load()) / 1e6;
    state::RunRecord r{.compiles = jit_ ? jit_->compiles() : 0,
                       .loaded = jit_ ? jit_->loaded() : 0,
                       .time_to_first_token_s = 0,
                       .time_to_top_tier_s = jit_ ? jit_->time_to_top_s() : -1,
                       .decode_tok_s = secs > 0 ? double(predicted_.load()) / secs : 0,
                       .compile_ms = jit_ ? jit_->compile_ms() : 0};
    const std::string cpu = jit_ ? jit_->target() : "";
    try {
      r = model_store_->record(jit_ ? jit_->outcomes() : std::vector<jit::UnitOutcome>{}, r, model_name_, cpu,
                               cpu.empty() ? "" : native::format_cpu_features(native::host_cpu_features()));
      std::fprintf(stderr, "bareflow: serve: state: %s: run %" PRIu64 ", %" PRIu64 " compiles, %" PRIu64 " loaded%s\n",
                   o_.store->path().c_str(), r.run, r.compiles, r.loaded, r.converged ? ", converged" : "");
    } catch (const Error& e) {
      std::fprintf(stderr, "bareflow: serve: state not recorded: %s\n", e.what());
    }
  }
  std::fprintf(stderr, "bareflow: serve: stopped by %s\n", strsignal(sig));
  std::fflush(stderr);
  _exit(0);
}

int Server::run() {
  // SIGINT and SIGTERM are taken by one thread (every thread started from here blocks them).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread(&Server::stop_on_signal, this, signals).detach();
  net::io_context ioc;
  tcp::acceptor acceptor(ioc);
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(o_.host, ec);
  if (ec) fail("--host", "'" + o_.host + "' is not an IP address");
  const tcp::endpoint at(address, uint16_t(o_.port));
  acceptor.open(at.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(at, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("--port", o_.host + ":" + std::to_string(o_.port) + ": " + ec.message());
  std::fprintf(stderr, "bareflow: serve: listening on http://%s:%u (loading %s)\n", o_.host.c_str(),
               unsigned(acceptor.local_endpoint().port()), o_.model_path.c_str());
  std::fflush(stderr);
  std::thread(&Server::load, this).detach();
  for (;;) {
    auto conn_ioc = std::make_shared<net::io_context>();
    tcp::socket socket(*conn_ioc);
    acceptor.accept(socket, ec);
    if (ec) continue;
    if (connections_.fetch_add(1) >= o_.max_connections) {
      connections_--;
      errors_++;
      const std::string body = error_body(503, "too many connections").dump();
      const std::string res = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      socket.non_blocking(true, ec);
      socket.write_some(net::buffer(res), ec);
      continue;
    }
    std::thread([this, conn_ioc, s = std::move(socket)]() mutable {
      serve_connection(conn_ioc, std::move(s));
      connections_--;
    }).detach();
  }
}

}  // namespace

int run(const Options& o) {
  static Server server(o);  // outlives the detached connection threads
  return server.run();
}

}  // namespace bf::serve
