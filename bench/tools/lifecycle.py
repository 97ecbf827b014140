#!/usr/bin/python3
"""The store's lifecycle on a synthetic model of a real shape: runs 1..N of `bareflow generate` on
one fresh store, each paired with a --jit=off run right after it (same machine, same minute), then
the run-by-run table of `bareflow state report` with the paired figures beside it.
usage: lifecycle.py BAREFLOW BENCH_SYNTH_MODEL TOKENIZER SHAPE TYPE [RUNS] [STEPS]
  e.g. lifecycle.py build/bareflow build/bench/bench_synth_model ../shared/models/tokenizer.bin stories110M q8_0"""
import json
import os
import re
import subprocess
import sys
import tempfile

bareflow, synth, tokenizer, shape, dtype = sys.argv[1:6]
runs = int(sys.argv[6]) if len(sys.argv) > 6 else 3
steps = sys.argv[7] if len(sys.argv) > 7 else "64"
tmp = tempfile.mkdtemp(prefix="bareflow-lifecycle-")
model = os.path.join(tmp, f"{shape}-{dtype}.gguf")
store = os.path.join(tmp, "state.bfs")
try:
    subprocess.run([synth, model, shape, dtype], check=True, stdout=subprocess.DEVNULL)
    common = [bareflow, "generate", model, "-z", tokenizer, "-t", "0", "-n", steps, "-i", "Once upon a time"]
    env = dict(os.environ)
    env.pop("BAREFLOW_STATE", None)
    off = []
    for _ in range(runs):
        subprocess.run(common + ["--state", store], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
        # The paired baseline: no store, no JIT. Its time to first token from the same clock start.
        r = subprocess.run(common + ["--no-state", "--jit=off", "--profile"], check=True, capture_output=True, env=env)
        err = r.stderr.decode()
        tok = re.search(r"achieved tok/s: ([0-9.]+)", err)
        first = re.search(r"time to first token: ([0-9.]+)", err)
        off.append((float(tok.group(1)) if tok else 0.0, float(first.group(1)) if first else 0.0))
    rows = json.loads(subprocess.run([bareflow, "state", "report", "--json", "--state", store], check=True,
                                     capture_output=True).stdout)
    print(f"lifecycle: {shape} {dtype}, {steps} positions, {runs} runs on one store, each paired with --jit=off")
    print("| run | compiles | loaded | first token s | jit=off first token s | to top tier s | decode tok/s"
          " | jit=off tok/s | ratio | compile ms | converged | state bytes |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r, (o, o_first) in zip(rows, off):
        print(f"| {r['run']} | {r['compiles']} | {r['loaded']} | {r['time_to_first_token_s']:.3f} | {o_first:.3f} |"
              f" {r['time_to_top_tier_s']:.3f} | {r['decode_tok_s']:.1f} | {o:.1f} |"
              f" {r['decode_tok_s'] / o if o else 0:.2f} | {r['compile_ms']:.0f} | {'yes' if r['converged'] else 'no'} |"
              f" {r['state_bytes']} |")
finally:
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
