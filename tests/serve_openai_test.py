#!/usr/bin/python3
"""bareflow serve with the official openai npm client (installed under build/ at test time; the
test is skipped, visibly, when npm or the registry is not there): a completion, a seeded one, a
chat, a streamed chat, four concurrent requests, the model list and a wrong key, checked against
bareflow generate's text.
usage: serve_openai_test.py BAREFLOW SHARED_MODELS_DIR NPM_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading

BAREFLOW, MODELS, NPM = sys.argv[1:4]
MODEL, TOK = os.path.join(MODELS, "stories260K.bin"), os.path.join(MODELS, "tok512.bin")
HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[-700:]), flush=True)
    if not ok:
        failures.append(name)


if not shutil.which("node") or not shutil.which("npm"):
    print("SKIP: node and npm are not installed")
    sys.exit(77)
if not os.path.isdir(os.path.join(NPM, "node_modules", "openai")):
    r = subprocess.run(["npm", "install", "--prefix", NPM, "openai@4", "--no-audit", "--no-fund"], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        print("SKIP: npm install openai failed (no registry?): " + r.stderr.strip()[-300:])
        sys.exit(77)

p = subprocess.Popen([BAREFLOW, "serve", MODEL, "-z", TOK, "--port", "0", "-T", "1", "--api-key", "sekrit", "--no-state"],
                     stderr=subprocess.PIPE, text=True)
m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.stderr.readline())
if not m:
    p.kill()
    sys.exit("FAIL: serve did not start")
threading.Thread(target=p.stderr.read, daemon=True).start()
try:
    r = subprocess.run(["node", os.path.join(HERE, "tools", "openai_client.mjs"), os.path.join(NPM, "node_modules"),
                        f"http://127.0.0.1:{m.group(1)}/v1"], capture_output=True, text=True, timeout=300)
finally:
    p.terminate()
    p.wait(timeout=30)
if r.returncode != 0:
    sys.exit("FAIL: the openai client failed: " + r.stderr[-1500:])
out = json.loads(r.stdout)


def generate(*flags):
    return subprocess.run([BAREFLOW, "generate", MODEL, "-z", TOK, "--no-state", *flags], capture_output=True,
                          text=True).stdout


P = "Once upon a time"
n = out["prompt_tokens"]
check("completion == bareflow generate's greedy text", generate("-t", "0", "-n", str(n + 39), "-i", P) ==
      P + out["completion"] + "\n", out["completion"])
check("seeded completion == bareflow generate -s 42", generate("-t", "0.8", "-p", "0.9", "-s", "42", "-n", str(n + 29),
                                                              "-i", P) == P + out["seeded"] + "\n", out["seeded"])
check("streamed chat == the chat", out["chat"] and out["chat_streamed"] == out["chat"], out)
check("4 concurrent completions: each the greedy text", out["concurrent"] == [out["completion"]] * 4, out["concurrent"])
check("the model list", out["models"] == ["stories260K.bin"], out["models"])
check("a wrong key: 401", out["wrong_key"] == 401, out["wrong_key"])
sys.exit(1 if failures else 0)
