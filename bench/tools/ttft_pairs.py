#!/usr/bin/python3
"""Time to first token of `bareflow generate` under several configurations, run interleaved
(one of each per round, same machine, same minute), medians: the warm store against --jit=off.
A fresh store on a synthetic model is first run CONVERGE times.
usage: ttft_pairs.py BAREFLOW BENCH_SYNTH_MODEL TOKENIZER SHAPE TYPE [ROUNDS] [CONVERGE]
  e.g. ttft_pairs.py build/bareflow build/bench/bench_synth_model ../shared/models/tokenizer.bin stories110M q8_0 15"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

bareflow, synth, tokenizer, shape, dtype = sys.argv[1:6]
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 15
converge = int(sys.argv[7]) if len(sys.argv) > 7 else 4
tmp = tempfile.mkdtemp(prefix="bareflow-ttft-")
model = os.path.join(tmp, f"{shape}-{dtype}.gguf")
store = os.path.join(tmp, "state.bfs")
env = dict(os.environ)
env.pop("BAREFLOW_STATE", None)
try:
    subprocess.run([synth, model, shape, dtype], check=True, stdout=subprocess.DEVNULL)
    for _ in range(converge):
        subprocess.run([bareflow, "generate", model, "-z", tokenizer, "-t", "0", "-n", "64", "-i", "Once",
                        "--state", store], check=True, capture_output=True, env=env)
    configs = {"warm store (JIT)": ["--state", store], "store, --jit=off": ["--state", store, "--jit=off"],
               "--no-state --jit=off": ["--no-state", "--jit=off"]}
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for name, flags in configs.items():
            r = subprocess.run([bareflow, "generate", model, "-z", tokenizer, "-t", "0", "-n", "16", "-i", "Once"] + flags,
                               check=True, capture_output=True, env=env)
            times[name].append(float(re.search(r"time to first token: ([0-9.]+)", r.stderr.decode()).group(1)))
    base = statistics.median(times["--no-state --jit=off"])
    print(f"time to first token: {shape} {dtype}, prompt 'Once', -n 16, {rounds} interleaved rounds, medians")
    print("| configuration | first token s | vs --no-state --jit=off |")
    print("| --- | ---: | ---: |")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.4f} | {statistics.median(t) / base:.2f} |")
finally:
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
