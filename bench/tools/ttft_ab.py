#!/usr/bin/python3
"""Time to first token of two bareflow builds, interleaved (one run of each configuration per
round), medians, as ratios to NEW's --no-state --jit=off: the warm store of each (converged by 4
runs of 64 positions first) against --jit=off. Prompt "Once", -n 16.
usage: ttft_ab.py OLD_BAREFLOW NEW_BAREFLOW MODEL TOKENIZER ROUNDS"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
old, new, model, tok, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
stores = {}
for name, bf in (("old", old), ("new", new)):
    st = os.path.join(tempfile.mkdtemp(prefix="bareflow-ttft-ab-"), "state.bfs")
    for _ in range(4):
        subprocess.run([bf, "generate", model, "-z", tok, "-t", "0", "-n", "64", "-i", "Once", "--state", st], check=True, capture_output=True)
    stores[name] = st
cfg = {"old warm": [old, "--state", stores["old"]], "new warm": [new, "--state", stores["new"]],
       "old --jit=off": [old, "--no-state", "--jit=off"], "new --jit=off": [new, "--no-state", "--jit=off"]}
t = {k: [] for k in cfg}
for _ in range(rounds):
    for k, (bf, *fl) in cfg.items():
        r = subprocess.run([bf, "generate", model, "-z", tok, "-t", "0", "-n", "16", "-i", "Once"] + fl, check=True, capture_output=True)
        t[k].append(float(re.search(r"time to first token: ([0-9.]+)", r.stderr.decode()).group(1)))
base = statistics.median(t["new --jit=off"])
print("| configuration | first token s | vs new --no-state --jit=off |")
print("| --- | ---: | ---: |")
for k, v in t.items():
    print(f"| {k} | {statistics.median(v):.4f} | {statistics.median(v) / base:.2f} |")
