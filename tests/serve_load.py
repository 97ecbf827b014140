#!/usr/bin/python3
"""make soak part serve-load: bareflow serve under SECONDS of CLIENTS clients at once, each looping
over a random mix of valid completions (streamed or not), bad requests, oversized bodies, slow
starts and disconnects mid-stream. Afterwards the server must still answer, the greedy text must
be unchanged, every answer must have had an expected status, and its resident memory must not
have grown by more than 64 MiB (no connection or slot leaks).
usage: serve_load.py BAREFLOW SHARED_MODELS_DIR [SECONDS] [CLIENTS]"""
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

BAREFLOW, MODELS = sys.argv[1:3]
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 60
CLIENTS = int(sys.argv[4]) if len(sys.argv) > 4 else 32
MODEL, TOK = os.path.join(MODELS, "stories260K.bin"), os.path.join(MODELS, "tok512.bin")

p = subprocess.Popen([BAREFLOW, "serve", MODEL, "-z", TOK, "--port", "0", "-T", "1", "--timeout", "5", "--queue", "64", "--no-state"],
                     stderr=subprocess.PIPE, text=True)
port = int(re.search(r":(\d+) ", p.stderr.readline()).group(1))
threading.Thread(target=p.stderr.read, daemon=True).start()
time.sleep(0.5)


def rss_kb():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def call(method, path, body=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=raw if raw is not None else json.dumps(body) if body is not None else None)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


greedy = json.loads(call("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0})[1])
rss0 = rss_kb()
counts, unexpected, lock = {}, [], threading.Lock()
end = time.monotonic() + SECONDS


def client(seed):
    rnd = random.Random(seed)
    while time.monotonic() < end:
        kind = rnd.choice(["ok", "ok", "stream", "chat", "bad", "type", "big", "slow", "drop", "404"])
        try:
            if kind in ("ok", "stream"):
                st, _ = call("POST", "/v1/completions", {"prompt": "Once", "max_tokens": rnd.randint(1, 60),
                                                         "temperature": rnd.random(), "stream": kind == "stream"})
                want = (200, 503)
            elif kind == "chat":
                st, _ = call("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                              "max_tokens": 20})
                want = (200, 503)
            elif kind == "bad":
                st, _ = call("POST", "/completion", raw=rnd.choice(["{", "[]", "null", "\x00\xff", '{"prompt": 3}']))
                want = (400,)
            elif kind == "type":
                field = rnd.choice(["max_tokens", "temperature", "top_p", "seed", "stop", "stream"])
                st, _ = call("POST", "/v1/completions", {"prompt": "a", field: 5 if field in ("stop", "stream") else "x"})
                want = (400,)
            elif kind == "404":
                st, _ = call("GET", "/" + "x" * rnd.randint(1, 200))
                want = (404,)
            else:
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                if kind == "big":
                    s.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n")
                    st = int(s.recv(64).split()[1] or 0)
                    want = (413,)
                elif kind == "slow":  # half a request, then silence: dropped after --timeout
                    s.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\n")
                    time.sleep(rnd.random())
                    st, want = 0, (0,)
                else:  # a stream abandoned after its first bytes
                    req = json.dumps({"prompt": "Once", "n_predict": -1, "stream": True})
                    s.sendall(f"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req)}\r\n\r\n{req}".encode())
                    s.recv(100)
                    st, want = 0, (0,)
                s.close()
        except (OSError, http.client.HTTPException, ValueError, IndexError) as e:
            st, want = repr(e), ()
        with lock:
            counts[kind] = counts.get(kind, 0) + 1
            if st not in want:
                unexpected.append((kind, st))


threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
time.sleep(6)  # the slow clients' timeouts
st, body = call("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0})
alive = st == 200 and json.loads(body)["choices"][0]["text"] == greedy["choices"][0]["text"]
grown = (rss_kb() - rss0) / 1024
p.terminate()
total = sum(counts.values())
print(f"serve-load: {total} requests from {CLIENTS} clients in {SECONDS:.0f} s ({dict(sorted(counts.items()))}), "
      f"{len(unexpected)} unexpected, RSS +{grown:.1f} MiB, still serving the same text: {alive}")
if unexpected:
    print("unexpected:", unexpected[:20])
sys.exit(0 if alive and not unexpected and grown < 64 else 1)
