#!/usr/bin/python3
"""bareflow bench --serve: bareflow serve on a synthetic model of a real shape, with 1, 4 and 16
clients at once, each sending streamed greedy completions for DURATION seconds: aggregate decode
tok/s (and its ratio to one client), and time to first token p50/p99 (from sending a request to
its first streamed piece). The client counts are interleaved over ROUNDS rounds (the machine is
shared and noisy): each ratio is taken within a round against that round's one client, and the
medians over rounds are reported.
usage: serve_bench.py BAREFLOW SYNTH_MODEL TOKENIZER [--shape S] [--format F] [--threads T]
                      [--parallel N] [--clients 1,4,16] [--tokens N] [--duration S] [--rounds R] [--json]"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def stream_one(port, tokens):
    """One streamed completion: (seconds to the first piece, pieces, seconds in all)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/completion", body=json.dumps({"prompt": "Once upon a time", "n_predict": tokens,
                                                     "temperature": 0, "stream": True}))
    r = c.getresponse()
    first, pieces, buf = None, 0, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if event.startswith(b"data: "):
                e = json.loads(event[6:])
                if e.get("stop"):
                    pieces = e.get("tokens_predicted", pieces)
                elif first is None:
                    first = time.monotonic() - t0
    c.close()
    return first, pieces, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bareflow")
    ap.add_argument("synth")
    ap.add_argument("tokenizer")
    ap.add_argument("--shape", default="stories110M")
    ap.add_argument("--format", default="q8_0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        clients = [int(c) for c in a.clients.split(",")]
    except ValueError:
        sys.exit(f"serve bench: --clients {a.clients!r} is not a list of numbers")
    work = tempfile.mkdtemp(prefix="bareflow-serve-bench-")
    model = os.path.join(work, f"{a.shape}-{a.format}.gguf")
    server = None
    try:
        r = subprocess.run([a.synth, model, a.shape, a.format], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("serve bench: " + r.stderr.strip())
        server = subprocess.Popen([a.bareflow, "serve", model, "-z", a.tokenizer, "--port", "0", "-T", str(a.threads),
                                   "--no-state", "--parallel", str(a.parallel), "--queue", str(max(clients) + 1)], stderr=subprocess.PIPE, text=True)
        m = re.search(r":(\d+) ", server.stderr.readline())
        if not m:
            sys.exit("serve bench: the server did not start")
        port = int(m.group(1))
        threading.Thread(target=server.stderr.read, daemon=True).start()
        stream_one(port, 4)  # loaded and warm
        runs = {n: [] for n in clients}  # per client count, one row per round
        for _ in range(a.rounds):
            for n in clients:
                firsts, tokens, lock = [], [0], threading.Lock()
                end = time.monotonic() + a.duration
                t0 = time.monotonic()

                def client():
                    while time.monotonic() < end:
                        f, k, _ = stream_one(port, a.tokens)
                        with lock:
                            if f is not None:
                                firsts.append(f)
                            tokens[0] += k

                ts = [threading.Thread(target=client) for _ in range(n)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                wall = time.monotonic() - t0
                runs[n].append({"tok_s": tokens[0] / wall, "firsts": firsts})
        rows = []
        for n in clients:
            firsts = [f for r in runs[n] for f in r["firsts"]]
            ratios = [r["tok_s"] / one["tok_s"] for r, one in zip(runs[n], runs[clients[0]])]
            rows.append({"clients": n, "aggregate_tok_s": statistics.median(r["tok_s"] for r in runs[n]),
                         "ratio": statistics.median(ratios), "ttft_p50_s": percentile(firsts, 50),
                         "ttft_p99_s": percentile(firsts, 99), "requests": len(firsts)})
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        subprocess.run(["rm", "-rf", work])
    if a.json:
        for r in rows:
            print(json.dumps(dict(r, model=a.shape, format=a.format, threads=a.threads, slots=a.parallel)))
        return 0
    print(f"bareflow serve: {a.shape} {a.format}, {a.threads} threads, {a.parallel} slots, streamed greedy completions of {a.tokens} tokens, "
          f"{a.rounds} interleaved rounds of {a.duration:.0f} s per row, medians")
    base = f"{clients[0]} client" + ("s" if clients[0] > 1 else "")
    print(f"| clients | requests | aggregate tok/s | vs {base} | first token p50 s | p99 s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['aggregate_tok_s']:.1f} | {r['ratio']:.2f} | {r['ttft_p50_s']:.3f} | "
              f"{r['ttft_p99_s']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
