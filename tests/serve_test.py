#!/usr/bin/python3
"""bareflow serve on loopback, with Python's own HTTP client: the routes, the texts against
bareflow generate (greedy and seeded), streaming, stop strings, concurrent requests, a client
that goes away mid-stream, and bad input (each a clear HTTP error with OpenAI's error shape; the
server keeps serving). Bad flags and a port in use: one line, exit 2.
usage: serve_test.py BAREFLOW SHARED_MODELS_DIR"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

BAREFLOW, MODELS = sys.argv[1:3]
MODEL, TOK = os.path.join(MODELS, "stories260K.bin"), os.path.join(MODELS, "tok512.bin")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[-700:]), flush=True)
    if not ok:
        failures.append(name)


def start(*flags):
    if "--state" not in flags:
        flags = ("--no-state",) + flags
    p = subprocess.Popen([BAREFLOW, "serve", MODEL, "-z", TOK, "--port", "0", "-T", "1", *flags],
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        sys.exit(f"FAIL: serve did not start: {line}{p.stderr.read()}")
    log = []
    threading.Thread(target=lambda: log.append(p.stderr.read()), daemon=True).start()  # drained, kept
    p.log = log
    port = int(m.group(1))
    for _ in range(200):
        if request(port, "GET", "/health")[0] == 200:
            return p, port
        time.sleep(0.05)
    sys.exit("FAIL: /health never said ok")


def stop(p):
    """Ends a server with SIGTERM: it must exit 0 and its log hold no sanitizer report. Returns the log."""
    p.terminate()
    status = p.wait(timeout=30)
    time.sleep(0.2)
    text = "".join(p.log)
    check("SIGTERM: the server exits 0, its log has no sanitizer report", status == 0 and "runtime error" not in text and
          "Sanitizer" not in text, (status, text[-500:]))
    return text


def request(port, method, path, body=None, headers=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


def generate(*flags):
    r = subprocess.run([BAREFLOW, "generate", MODEL, "-z", TOK, "--no-state", *flags], capture_output=True, text=True)
    return r.stdout


def error_shaped(status, body, want):
    return status == want and isinstance(body, dict) and body.get("error", {}).get("code") == want and \
        isinstance(body["error"].get("message"), str)


def sse_events(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body=json.dumps(body))
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, r.getheader("Content-Type"), [e[len("data: "):] for e in text.split("\n\n") if e.startswith("data: ")]


server, port = start()
PROMPT = "Once upon a time"

# Greedy: the completion is generate's text after the prompt.
st, body = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 40, "temperature": 0})
check("/v1/completions answers 200 with a text_completion", st == 200 and body["object"] == "text_completion", body)
usage = body["usage"]
text = body["choices"][0]["text"]
want = generate("-t", "0", "-n", str(usage["prompt_tokens"] + 40 - 1), "-i", PROMPT)
check("greedy completion == bareflow generate's text", want == PROMPT + text + "\n", (want, text))
check("usage counts the tokens", usage["completion_tokens"] == 40 and
      usage["total_tokens"] == usage["prompt_tokens"] + 40 and body["choices"][0]["finish_reason"] == "length", usage)

# curl, the client people type: the same completion.
if shutil.which("curl"):
    r = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/v1/completions", "-d",
                        json.dumps({"prompt": PROMPT, "max_tokens": 40, "temperature": 0})],
                       capture_output=True, text=True, timeout=60)
    check("curl: the same completion", r.returncode == 0 and json.loads(r.stdout)["choices"][0]["text"] == text, r.stdout)
else:
    print("SKIP curl: not installed")

# Seeded sampling on the native route: generate's -t/-p/-s give the same text.
st, body = request(port, "POST", "/completion", {"prompt": PROMPT, "n_predict": 30, "temperature": 0.8, "top_p": 0.9,
                                                 "seed": 42})
want = generate("-t", "0.8", "-p", "0.9", "-s", "42", "-n", str(body["tokens_evaluated"] + 30 - 1), "-i", PROMPT)
check("seeded /completion == bareflow generate -s 42", st == 200 and want == PROMPT + body["content"] + "\n",
      (want, body))

# Streaming: the events concatenate to the non-streamed text; OpenAI's routes end with [DONE].
chat = {"messages": [{"role": "system", "content": "Tell stories."}, {"role": "user", "content": "A story?"}],
        "max_tokens": 30, "temperature": 0}
st, whole = request(port, "POST", "/v1/chat/completions", chat)
check("/v1/chat/completions answers a message", st == 200 and whole["choices"][0]["message"]["role"] == "assistant",
      whole)
st, ctype, events = sse_events(port, "/v1/chat/completions", dict(chat, stream=True))
pieces = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
check("streamed chat: event-stream ending with [DONE]", st == 200 and ctype == "text/event-stream" and
      events and events[-1] == "[DONE]", (st, ctype, events[-3:]))
check("streamed chat == the whole message", pieces == whole["choices"][0]["message"]["content"], (pieces, whole))
st, ctype, events = sse_events(port, "/completion", {"prompt": PROMPT, "n_predict": 20, "temperature": 0, "stream": True})
last = json.loads(events[-1])
streamed = "".join(json.loads(e)["content"] for e in events[:-1])
check("streamed /completion ends with stop: true", last["stop"] is True and last["tokens_predicted"] == 20, last)
check("streamed /completion == generate's text", PROMPT + streamed + "\n" ==
      generate("-t", "0", "-n", str(last["tokens_evaluated"] + 20 - 1), "-i", PROMPT), streamed)

# bareflow chat: each reply is the server's chat completion of the same conversation.
r1 = request(port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "A story?"}],
                                                    "max_tokens": 30, "temperature": 0})[1]["choices"][0]["message"]["content"]
r2 = request(port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "A story?"},
                                                                 {"role": "assistant", "content": r1},
                                                                 {"role": "user", "content": "More?"}],
                                                    "max_tokens": 30, "temperature": 0})[1]["choices"][0]["message"]["content"]
r = subprocess.run([BAREFLOW, "chat", MODEL, "-z", TOK, "-t", "0", "-n", "30"], input="A story?\nMore?\n",
                   capture_output=True, text=True, timeout=120)
check("bareflow chat: two turns, the server's replies to the same history", r.returncode == 0 and
      r.stdout == r1 + "\n" + r2 + "\n", (r.stdout, r1, r2, r.stderr))
r = subprocess.run([BAREFLOW, "chat", MODEL, "-z", TOK, "-t", "0", "-n", "30"], input="word " * 700 + "\nHi\n",
                   capture_output=True, text=True, timeout=120)
check("bareflow chat: a line too long for the context is skipped with a note", r.returncode == 0 and
      "does not leave room for a reply" in r.stderr and r.stdout.count("\n") >= 1, (r.stdout, r.stderr))

# bareflow chat repacks through the copy kept beside the default store when its folder exists, and
# creates nothing when it does not; the replies are the file layout's either way.
q8 = os.path.join(MODELS, "stories260K-q8_0.gguf")
home = tempfile.mkdtemp(prefix="bareflow-chat-")
chat = lambda state, *extra: subprocess.run([BAREFLOW, "chat", q8, "-t", "0", "-n", "30", *extra], input="A story?\n",
                                            capture_output=True, text=True, timeout=120,
                                            env=dict(os.environ, BAREFLOW_STATE=state))
want = chat(os.path.join(home, "none", "state.bfs"), "--no-repack")
r = chat(os.path.join(home, "none", "state.bfs"))
check("bareflow chat without a store folder: the same reply, nothing created",
      r.returncode == 0 and r.stdout == want.stdout and len(want.stdout) > 20 and not os.path.exists(os.path.join(home, "none")),
      (r.stdout, want.stdout, r.stderr))
copies = os.path.join(home, "repacked")
r1 = chat(os.path.join(home, "state.bfs"))
names = os.listdir(copies) if os.path.isdir(copies) else []
first = os.stat(os.path.join(copies, names[0])) if len(names) == 1 else None
r2 = chat(os.path.join(home, "state.bfs"))
again = os.stat(os.path.join(copies, names[0])) if first else None
check("bareflow chat: the repacked copy written once, then read (the same reply each time)",
      r1.stdout == want.stdout and r2.stdout == want.stdout and first is not None and
      (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns) and r1.stderr == r2.stderr == "",
      (names, r1.stdout, r2.stdout, r1.stderr, r2.stderr))
shutil.rmtree(home, ignore_errors=True)

# A stop string: the text ends before it.
st, body = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 60, "temperature": 0, "stop": ["Lily"]})
t = body["choices"][0]["text"]
check("stop string: text cut before it, finish_reason stop", st == 200 and "Lily" not in t and
      body["choices"][0]["finish_reason"] == "stop" and (want := generate("-t", "0", "-n", "80", "-i", PROMPT))
      .startswith(PROMPT + t + "Lily"), (t, body))

# Several clients at once, each gets its own whole greedy text.
results = [None] * 4


def client(i):
    results[i] = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 40, "temperature": 0})


threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()
check("4 concurrent requests: all 200, all the greedy text",
      all(r and r[0] == 200 and r[1]["choices"][0]["text"] == text for r in results), results)

# Different prompts, lengths and seeds at once, decoded as one batch over the slots (the default 4;
# two wait in the queue), some streamed: each is exactly generate's text for its prompt and seed.
mixed = [("Once upon a time", 30, 7, False), ("The little dog", 55, 11, True), ("Lily and Ben", 20, 3, False),
         ("One day", 70, 5, True), ("The sun", 12, 9, False), ("Tom had a red ball", 45, 1, True)]
mixed_out = [None] * len(mixed)


def mixed_client(i):
    prompt, n, seed, stream = mixed[i]
    body = {"prompt": prompt, "n_predict": n, "temperature": 1.0, "seed": seed, "stream": stream}
    if stream:
        st, _, events = sse_events(port, "/completion", body)
        events = [json.loads(e) for e in events]
        mixed_out[i] = (st, "".join(e["content"] for e in events), events[-1].get("tokens_evaluated"))
    else:
        st, b = request(port, "POST", "/completion", body)
        mixed_out[i] = (st, b.get("content"), b.get("tokens_evaluated"))


threads = [threading.Thread(target=mixed_client, args=(i,)) for i in range(len(mixed))]
for th in threads:
    th.start()
for th in threads:
    th.join()
same = []
for (prompt, n, seed, _), out in zip(mixed, mixed_out):
    st, content, evaluated = out
    same.append(st == 200 and generate("-t", "1.0", "-p", "0.9", "-s", str(seed), "-n", str(evaluated + n - 1), "-i",
                                       prompt) == prompt + content + "\n")
check("6 concurrent requests over 4 slots (prompts, lengths, seeds differ; 3 streamed): each generate's text",
      all(same), list(zip(same, mixed_out)))
st, m = request(port, "GET", "/metrics")
check("/metrics: 4 slots, none busy after", st == 200 and "bareflow_slots_total 4\n" in m and
      "bareflow_requests_processing 0\n" in m, m)

# A client that goes away mid-stream frees the slot: the next request is answered.
s = socket.create_connection(("127.0.0.1", port))
req = json.dumps({"prompt": PROMPT, "n_predict": -1, "temperature": 1.0, "stream": True})
s.sendall(f"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req)}\r\n\r\n{req}".encode())
s.recv(200)
s.close()
st, body = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 5, "temperature": 0})
check("after a client left mid-stream, the server answers", st == 200, body)

# Bad input: each a clear error, the server keeps serving.
cases = [
    ("unknown route", "GET", "/nope", None, None, 404),
    ("wrong method", "GET", "/v1/completions", None, None, 405),
    ("malformed JSON", "POST", "/v1/completions", None, "{bad", 400),
    ("JSON that is not an object", "POST", "/completion", None, "[1]", 400),
    ("max_tokens of the wrong type", "POST", "/v1/completions", {"prompt": "a", "max_tokens": "x"}, None, 400),
    ("negative max_tokens", "POST", "/v1/completions", {"prompt": "a", "max_tokens": -5}, None, 400),
    ("negative temperature", "POST", "/v1/completions", {"prompt": "a", "temperature": -1}, None, 400),
    ("no prompt", "POST", "/v1/completions", {"max_tokens": 3}, None, 400),
    ("no messages", "POST", "/v1/chat/completions", {"max_tokens": 3}, None, 400),
    ("a message with a bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "x", "content": "y"}]}, None, 400),
    ("a prompt over the context", "POST", "/v1/completions", {"prompt": "Once upon a time " * 400, "max_tokens": 1}, None, 400),
]
for name, method, path, body, raw, status in cases:
    try:
        st, b = request(port, method, path, body, raw=raw)
    except (ConnectionError, http.client.HTTPException) as e:  # a server may close after a 413
        st, b = None, repr(e)
    check(f"{name}: {status} with an error body", error_shaped(st, b, status), (st, b))
# A body over 1 MiB is refused from its Content-Length, before it is read.
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n" + b"x" * 65536)
reply = b""
while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
s.close()
head, _, rest = reply.partition(b"\r\n\r\n")
check("a body over 1 MiB: 413 with an error body", head.startswith(b"HTTP/1.1 413") and
      error_shaped(413, json.loads(rest or b"{}"), 413), reply[:300])
st, body = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 10 ** 12, "temperature": 0})
check("a huge max_tokens is cut at the context", st == 200 and body["choices"][0]["finish_reason"] in ("length", "stop"),
      body)
# 200 connections at once, each asking /health and /v1/models: every one answered.
answers = []


def health():
    try:
        answers.append(request(port, "GET", "/health")[0] == 200 and request(port, "GET", "/v1/models")[0] == 200)
    except (OSError, http.client.HTTPException):
        answers.append(False)


crowd = [threading.Thread(target=health) for _ in range(200)]
for th in crowd:
    th.start()
for th in crowd:
    th.join()
check("200 concurrent connections: all answered", len(answers) == 200 and all(answers), answers.count(False))
st, body = request(port, "GET", "/v1/models")
check("/v1/models lists the model", st == 200 and body["data"][0]["id"] == "stories260K.bin", body)
st, body = request(port, "GET", "/metrics")
m = re.search(r"^bareflow_tokens_predicted_total (\d+)", body, re.M)
check("/metrics counts requests and tokens", st == 200 and "bareflow_requests_total" in body and m and int(m.group(1)) > 100,
      body[:300])
stop(server)

# One slot and no queue: requests beyond it get 503 with an error body, the others their text.
server, port = start("--parallel", "1", "--queue", "0")
full = request(port, "POST", "/completion", {"prompt": PROMPT, "n_predict": -1, "temperature": 0})[1]["content"]
crowd_out = [None] * 6
crowd = [threading.Thread(target=lambda i=i: crowd_out.__setitem__(i, request(
    port, "POST", "/completion", {"prompt": PROMPT, "n_predict": -1, "temperature": 0}))) for i in range(6)]
for th in crowd:
    th.start()
for th in crowd:
    th.join()
served = [r for r in crowd_out if r[0] == 200]
print(f"     --parallel 1 --queue 0: {len(served)} of 6 served, {6 - len(served)} refused")
check("--parallel 1 --queue 0: each answer the whole text or 503 with an error body",
      served and all(r[1]["content"] == full for r in served) and
      all(error_shaped(r[0], r[1], 503) and "busy" in r[1]["error"]["message"] for r in crowd_out if r[0] != 200),
      crowd_out)
stop(server)

# An API key: every route but /health needs it.
# A bareflow built without LLVM (the sanitizer build) has no --jit: that check is skipped.
has_jit = "tiered | O0" in subprocess.run([BAREFLOW, "generate", "--help"], capture_output=True, text=True).stdout
server, port = start("--api-key", "sekrit", *(["--jit", "O2"] if has_jit else []))  # and the JIT's code serving
check("with --api-key, /health needs none", request(port, "GET", "/health")[0] == 200)
st, b = request(port, "GET", "/v1/models")
check("with --api-key, no key: 401", error_shaped(st, b, 401), (st, b))
st, b = request(port, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
check("with --api-key, a wrong key: 401", error_shaped(st, b, 401), (st, b))
check("with --api-key, the key: 200", request(port, "GET", "/v1/models", headers={"Authorization": "Bearer sekrit"})[0] == 200)
st, body = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 40, "temperature": 0},
                   headers={"Authorization": "Bearer sekrit"})
if has_jit:
    check("--jit O2: the same greedy text", st == 200 and body["choices"][0]["text"] == text, body)
else:
    print("SKIP --jit O2: this bareflow was built without the JIT")
# The same port again: one line, exit 2.
r = subprocess.run([BAREFLOW, "serve", MODEL, "-z", TOK, "--port", str(port)], capture_output=True, text=True, timeout=30)
check("a port in use: one line, exit 2", r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and
      "--port" in r.stderr, r.stderr)
stop(server)

# The store under serve: SIGTERM records the run; the next server starts warm from it.
if has_jit:
    store = os.path.join(tempfile.mkdtemp(prefix="bareflow-serve-state-"), "state.bfs")
    for run, want in ((1, "run 1, 10 compiles, 0 loaded"), (2, "run 2, 0 compiles, 10 loaded")):
        server, port = start("--state", store, "--jit", "O2")
        st, body = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 40, "temperature": 0})
        check(f"--state, server {run}: the greedy text", st == 200 and body["choices"][0]["text"] == text, body)
        log = stop(server)
        check(f"--state, server {run}: SIGTERM records {want}", f"serve: state: {store}: {want}" in log, log[-400:])
else:
    print("SKIP --state: this bareflow was built without the JIT")

# A model without a tokenizer: it loads behind the listener, then one line and exit 2.
lone = os.path.join(tempfile.mkdtemp(prefix="bareflow-serve-lone-"), "stories260K.bin")
shutil.copy(MODEL, lone)
r = subprocess.run([BAREFLOW, "serve", lone, "--port", "0", "--no-state"], capture_output=True, text=True, timeout=60)
check("a model without a tokenizer: one line naming it, exit 2", r.returncode == 2 and
      r.stderr.strip().splitlines()[-1].startswith("bareflow: " + lone) and "pass -z" in r.stderr, r.stderr)

for flags, words in ((["--port", "70000"], "--port"), (["--parallel", "65"], "--parallel"), (["--chat-template", "nope"], "--chat-template"),
                     (["--host", "not-an-ip", "--port", "0"], "--host"), (["--bogus"], "--bogus")):
    r = subprocess.run([BAREFLOW, "serve", MODEL, "-z", TOK, *flags], capture_output=True, text=True, timeout=30)
    check(f"bad flag {' '.join(flags)}: one line, exit 2", r.returncode == 2 and
          len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr)
sys.exit(1 if failures else 0)
