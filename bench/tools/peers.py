#!/usr/bin/python3
"""BareFlow side by side with llama.cpp (llama-bench) and llama2.c (run.c, runq.c) on the same
synthetic models (real shapes, random weights): decode and prefill tok/s, runs interleaved engine
by engine in every round, medians, ratios to BareFlow taken within this one run.

usage: peers.py BAREFLOW SYNTH_MODEL TOKENIZER PEERS_DIR [--shapes S,..] [--formats F,..]
                [--threads T,..] [--rounds R] [--decode N] [--prefill N] [--isa ISA] [--json] [--work DIR]

PEERS_DIR holds llama-bench, run_st/run_omp and runq_st/runq_omp (../shared/peers/build.sh DIR).
Model files: GGUF F32/Q8_0/Q4_0 with the tokenizer's vocabulary (BareFlow and llama.cpp read the
same file), llama2.c v0 for F32 (run.c) and v2 for Q8_0 (runq.c, its own Q8_0 with groups of 64).
BareFlow runs `generate --no-state --jit=off` (the AOT kernels; the JIT's top tier is as fast on
these types, docs/BENCHMARKS.md). Decode: "achieved tok/s" of a greedy run of N positions after a
one-word prompt (BareFlow, llama2.c; both skip the first step) and llama-bench -p 0 -n N (avg_ts).
Prefill: a prompt of N tokens (BareFlow's batched prefill, "prefill tok/s") and llama-bench -p N
-n 0; llama2.c has no batched prefill. --isa ISA is BareFlow's `generate --isa` (e.g. avx2, to
stand for an AVX2-only machine beside peers built for AVX2 only: PEERS_DIR is then such a build)."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile


DEFAULT_FORMATS = "f32,q8_0,q4_0"


def run(cmd, env=None, timeout=1800):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


def number(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"no {what} in: {text[-400:]}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bareflow")
    ap.add_argument("synth")
    ap.add_argument("tokenizer")
    ap.add_argument("peers")
    ap.add_argument("--shapes", default="stories15M,stories110M,tinyllama-1.1b")
    ap.add_argument("--formats", default=DEFAULT_FORMATS)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    for exe in ("llama-bench", "run_st", "run_omp", "runq_st", "runq_omp"):
        if not os.access(os.path.join(a.peers, exe), os.X_OK):
            sys.exit(f"peers: {a.peers}/{exe} missing (build them: ../shared/peers/build.sh {a.peers})")
    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        sys.exit(f"peers: --threads {a.threads!r} is not a list of numbers")
    if not threads or min(threads) < 1:
        sys.exit(f"peers: --threads {a.threads!r} must list thread counts of at least 1")
    work = a.work or tempfile.mkdtemp(prefix="bareflow-peers-")
    os.makedirs(work, exist_ok=True)
    try:
        return measure(a, threads, work)
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, IndexError, json.JSONDecodeError) as e:
        sys.exit(f"peers: {e}")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


def measure(a, threads, work):
    # A prompt of at least N tokens: BareFlow prefills N - 1 positions of it in one batch.
    long_prompt = " ".join(["Once upon a time there was a little girl"] * (a.prefill // 8 + 2))
    results = []  # dicts: engine, model, format, threads, decode_tok_s, prefill_tok_s
    for shape in a.shapes.split(","):
        for fmt in a.formats.split(","):
            if shape == "tinyllama-1.1b" and fmt == "f32" and a.formats == DEFAULT_FORMATS:
                continue  # 4.4 GB and ~5 tok/s: not in the default set (ask for it with --formats f32)
            gguf = os.path.join(work, f"{shape}-{fmt}.gguf")
            run([a.synth, gguf, shape, fmt, "--vocab", a.tokenizer])
            l2c = {"f32": ("run", "llama2c-v0"), "q8_0": ("runq", "llama2c-v2")}.get(fmt)
            l2c_file = None
            if l2c:
                l2c_file = os.path.join(work, f"{shape}-{l2c[1]}.bin")
                run([a.synth, l2c_file, shape, l2c[1]])
            for t in threads:
                samples = {}

                def add(engine, key, v):
                    samples.setdefault((engine, key), []).append(v)

                steps = a.decode + 2  # BOS + "Once", then the decoded positions
                for _ in range(a.rounds):
                    base = [a.bareflow, "generate", gguf, "-z", a.tokenizer, "-t", "0", "--no-state", "--jit=off",
                            "-T", str(t), "--isa", a.isa]
                    r = run(base + ["-n", str(steps), "-i", "Once"])
                    add("bareflow", "decode_tok_s", number(r"achieved tok/s: ([0-9.]+)", r.stderr, "decode tok/s"))
                    r = run(base + ["-n", str(a.prefill), "-i", long_prompt])
                    add("bareflow", "prefill_tok_s", number(r"prefill tok/s: ([0-9.]+)", r.stderr, "prefill tok/s"))
                    for key, pn in (("decode_tok_s", ["-p", "0", "-n", str(a.decode)]),
                                    ("prefill_tok_s", ["-p", str(a.prefill), "-n", "0"])):
                        r = run([os.path.join(a.peers, "llama-bench"), "-m", gguf, *pn, "-t", str(t), "-r", "1",
                                 "-o", "jsonl"])
                        rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
                        if not rows:
                            raise RuntimeError(f"llama-bench printed no result for {gguf}: {r.stderr.strip()[-300:]}")
                        add("llama.cpp", key, float(rows[-1]["avg_ts"]))
                    if l2c_file:
                        exe = os.path.join(a.peers, l2c[0] + ("_st" if t == 1 else "_omp"))
                        env = dict(os.environ, OMP_NUM_THREADS=str(t))
                        r = run([exe, l2c_file, "-z", a.tokenizer, "-t", "0", "-n", str(steps), "-i", "Once"], env=env)
                        add("llama2.c", "decode_tok_s", number(r"achieved tok/s: ([0-9.]+)", r.stderr, "tok/s"))
                for engine in ("bareflow", "llama.cpp", "llama2.c"):
                    d, p = samples.get((engine, "decode_tok_s")), samples.get((engine, "prefill_tok_s"))
                    if d or p:
                        results.append({"engine": engine, "model": shape, "format": fmt, "threads": t,
                                        "decode_tok_s": statistics.median(d) if d else None,
                                        "prefill_tok_s": statistics.median(p) if p else None})
                if not a.json:
                    print(f"peers: {shape} {fmt} T={t} done", file=sys.stderr, flush=True)
            for f in (gguf, l2c_file):
                if f:
                    os.unlink(f)
    if a.json:
        for r in results:
            print(json.dumps(r))
        return 0

    def get(engine, shape, fmt, t, key):
        for r in results:
            if (r["engine"], r["model"], r["format"], r["threads"]) == (engine, shape, fmt, t):
                return r[key]
        return None

    def cell(v):
        return f"{v:.1f}" if v is not None else "-"

    def ratio(b, p):
        return f"{b / p:.2f}" if b and p else "-"

    print(f"decode ({a.decode} tokens) and prefill ({a.prefill} tokens), tok/s, medians of {a.rounds} interleaved "
          f"rounds; ratio = BareFlow / peer; BareFlow --isa {a.isa}, peers from {a.peers}")
    print("| model | format | threads | BareFlow decode | llama.cpp | ratio | llama2.c | ratio | BareFlow prefill | "
          "llama.cpp | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    seen = []
    for r in results:
        k = (r["model"], r["format"], r["threads"])
        if k in seen:
            continue
        seen.append(k)
        b, l, c = (get(e, *k, "decode_tok_s") for e in ("bareflow", "llama.cpp", "llama2.c"))
        bp, lp = (get(e, *k, "prefill_tok_s") for e in ("bareflow", "llama.cpp"))
        print(f"| {k[0]} | {k[1]} | {k[2]} | {cell(b)} | {cell(l)} | {ratio(b, l)} | {cell(c)} | {ratio(b, c)} | "
              f"{cell(bp)} | {cell(lp)} | {ratio(bp, lp)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
