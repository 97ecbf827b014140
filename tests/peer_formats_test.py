#!/usr/bin/python3
"""The synthetic model files bench --peers hands the peers: llama2.c v0 (F32) and v2 (Q8_0)
checkpoints and a GGUF carrying the tokenizer's vocabulary. Each checkpoint must have exactly the
size llama2.c's layout gives its shape, and run.c and runq.c (../shared/peers, compiled here at
-O2, no fast-math) must print exactly BareFlow's greedy text on it: the peers and BareFlow then
run the same model. The GGUF's own vocabulary must give the text tokenizer.bin gives.
usage: peer_formats_test.py BAREFLOW SYNTH_MODEL SHARED_DIR (SHARED_DIR: ../shared)"""
import os
import subprocess
import sys
import tempfile

BAREFLOW, SYNTH, SHARED = sys.argv[1:4]
TOK = os.path.join(SHARED, "models", "tokenizer.bin")
PEERS = os.path.join(SHARED, "peers", "llama2.c")
tmp = tempfile.mkdtemp(prefix="bareflow-peer-formats-")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[-600:]), flush=True)
    if not ok:
        failures.append(name)


def out(cmd):
    r = subprocess.run(cmd, capture_output=True, timeout=300)
    if r.returncode != 0:
        check(" ".join(cmd[:3]), False, r.stderr.decode(errors="replace"))
    return r.stdout


if not os.path.isfile(TOK) or not os.path.isfile(os.path.join(PEERS, "run.c")):
    print(f"SKIP: needs {TOK} and {PEERS}/run.c, runq.c")
    sys.exit(77)
greedy = ["-z", TOK, "-t", "0", "-n", "40", "-i", "Once upon a time"]
# stories15M: dim 288, hidden 768, 6 layers of 6 heads (kv 6), vocab 32000, seq 256, shared
# classifier. v0: 7 ints, then F32 tensors (embedding, norms, wq wk wv wo, w1 w2 w3, final norm,
# the old RoPE tables seq x head_size). v2: a 256-byte header, F32 norms, then per tensor int8
# values and a float per group of 32 (64 does not divide 288).
D, H, L, V, S, HS, GS = 288, 768, 6, 32000, 256, 48, 32
mats = L * (4 * D * D + 3 * D * H)
SIZES = {"llama2c-v0": 28 + 4 * (V * D + 2 * L * D + mats + D + S * HS),
         "llama2c-v2": 256 + 4 * (2 * L * D + D) + (V * D + mats) * (1 + 4 / GS)}
for fmt, src in (("llama2c-v0", "run.c"), ("llama2c-v2", "runq.c")):
    model = os.path.join(tmp, f"stories15M-{fmt}.bin")
    out([SYNTH, model, "stories15M", fmt])
    check(f"{fmt}: {SIZES[fmt]:.0f} bytes", os.path.getsize(model) == SIZES[fmt], os.path.getsize(model))
    exe = os.path.join(tmp, src[:-2])
    subprocess.run(["gcc", "-O2", os.path.join(PEERS, src), "-lm", "-o", exe], check=True)
    want = out([exe, model] + greedy)
    got = out([BAREFLOW, "generate", model, "--no-state"] + greedy)
    check(f"{fmt}: {src} prints BareFlow's text", want and got == want, (want[:120], got[:120]))
gguf = os.path.join(tmp, "stories15M-q8_0.gguf")
out([SYNTH, gguf, "stories15M", "q8_0", "--vocab", TOK])
embedded = out([BAREFLOW, "generate", gguf, "--no-state", "-t", "0", "-n", "40", "-i", "Once upon a time"])
check("gguf --vocab: the embedded vocabulary gives tokenizer.bin's text",
      embedded and embedded == out([BAREFLOW, "generate", gguf, "--no-state"] + greedy), embedded[:120])
r = subprocess.run([SYNTH, os.path.join(tmp, "x.bin"), "stories15M", "llama2c-v0", "--vocab", TOK], capture_output=True)
check("a llama2.c checkpoint with --vocab is refused in one line",
      r.returncode == 2 and len(r.stderr.splitlines()) == 1 and b"--vocab" in r.stderr, r.stderr)
r = subprocess.run([SYNTH, os.path.join(tmp, "x.gguf"), "stories15M", "q8_0", "--vocab", os.path.join(tmp, "x.bin")],
                   capture_output=True)
check("a missing tokenizer is refused in one line", r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr)
subprocess.run(["rm", "-rf", tmp])
sys.exit(1 if failures else 0)
