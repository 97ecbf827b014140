#!/usr/bin/python3
"""The exported appliance beside the JIT it came from, on a synthetic model of a real shape: runs of
`bareflow generate` on a fresh store until it converges, `bareflow export`, then ROUNDS rounds of
three runs interleaved (the JIT warm from the store, the appliance, --jit=off without a store), and
the medians as a table with the sizes of the executables.
usage: export_bench.py BAREFLOW BENCH_SYNTH_MODEL TOKENIZER SHAPE TYPE [ROUNDS] [STEPS]"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

bareflow, synth, tokenizer, shape, dtype = sys.argv[1:6]
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 3
steps = sys.argv[7] if len(sys.argv) > 7 else "64"
tmp = tempfile.mkdtemp(prefix="bareflow-export-bench-")
model = os.path.join(tmp, f"{shape}-{dtype}.gguf")
store = os.path.join(tmp, "state.bfs")
appliance = os.path.join(tmp, "appliance")
env = dict(os.environ)
env.pop("BAREFLOW_STATE", None)


def timed(cmd):
    r = subprocess.run(cmd, check=True, capture_output=True, env=env)
    err = r.stderr.decode()
    tok = re.search(r"achieved tok/s: ([0-9.]+)", err)
    first = re.search(r"time to first token: ([0-9.]+)", err)
    return float(tok.group(1)) if tok else 0.0, float(first.group(1)) if first else 0.0, r.stdout


try:
    subprocess.run([synth, model, shape, dtype], check=True, stdout=subprocess.DEVNULL)
    args = [model, "-z", tokenizer, "-t", "0", "-n", steps, "-i", "Once upon a time"]
    converged_after = None
    for run in range(1, 7):
        subprocess.run([bareflow, "generate"] + args + ["--state", store], check=True, capture_output=True, env=env)
        r = subprocess.run([bareflow, "export", model, "--state", store, "-o", appliance], capture_output=True, env=env)
        if r.returncode == 0:
            converged_after = run
            break
    if converged_after is None:
        subprocess.run([bareflow, "export", model, "--state", store, "-o", appliance, "--force"], check=True, env=env)
    jit, app, off = [], [], []
    same = True
    for _ in range(rounds):
        j = timed([bareflow, "generate"] + args + ["--state", store])
        a = timed([appliance, "generate"] + args)
        o = timed([bareflow, "generate"] + args + ["--no-state", "--jit=off"])
        same = same and j[2] == a[2] == o[2]
        jit.append(j)
        app.append(a)
        off.append(o)
    med = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
    version = subprocess.run([appliance, "--version"], check=True, capture_output=True).stdout.decode()
    objects = sum(int(m) for m in re.findall(r"^unit \S+ \S+ (\d+) bytes", version, re.M))
    template = os.path.join(os.path.dirname(os.path.abspath(bareflow)), "bareflow-appliance")
    print(f"export: {shape} {dtype}, {steps} positions, converged after "
          f"{converged_after if converged_after else 'no'} runs ({'exported' if converged_after else 'export --force'}),"
          f" {rounds} interleaved rounds, medians; text identical in all runs: {'yes' if same else 'NO'}")
    print("| executable | bytes | decode tok/s | vs JIT | first token s | vs --jit=off |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = [("bareflow generate (JIT, warm store)", os.path.getsize(bareflow), jit),
            ("appliance (bareflow export)", os.path.getsize(appliance), app),
            ("bareflow generate --jit=off", os.path.getsize(bareflow), off)]
    for name, size, runs in rows:
        print(f"| {name} | {size} | {med(runs, 0):.1f} | {med(runs, 0) / med(jit, 0):.3f} | {med(runs, 1):.4f} |"
              f" {med(runs, 1) / med(off, 1):.2f} |")
    print(f"appliance: template {os.path.getsize(template)} bytes + payload "
          f"{os.path.getsize(appliance) - os.path.getsize(template)} bytes ({objects} bytes of objects)")
finally:
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
