#!/usr/bin/python3
"""The persistent store through whole runs of `bareflow generate`: warm start (run 2 compiles
nothing and prints the golden text), convergence by run 3, damaged stores, and crash trials (the
store stopped at its N-th write, flush or truncation, torn or losing its unflushed writes, and runs
SIGKILLed at random moments). After every damage or crash: the next run prints the golden text,
`state verify` passes, and no stored variant is rejected (no code from a half-written record runs).
usage: lifecycle_test.py BAREFLOW SHARED_MODELS_DIR [--jit] [--kill-trials N] [--seed S]
  --jit: this bareflow has the JIT (the warm-start checks need it; without it the store still
  records runs and profiles, which is what is checked then)."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "tools"))
from golden_text import golden_text  # noqa: E402

args = sys.argv[1:]
BAREFLOW, SHARED = (os.path.abspath(a) for a in args[:2])
JIT = "--jit" in args
KILL_TRIALS = int(args[args.index("--kill-trials") + 1]) if "--kill-trials" in args else 5
SEED = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
TMP = tempfile.mkdtemp(prefix="bareflow-state-")
GOLDEN = golden_text(SHARED)
MODEL = [os.path.join(SHARED, "stories260K.bin"), "-z", os.path.join(SHARED, "tok512.bin")]
GREEDY = ["-t", "0", "-n", "200", "-i", "Once upon a time"]
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[-700:]))
    if not ok:
        failures.append(name)


def env(**extra):
    e = dict(os.environ)
    e.pop("BAREFLOW_STATE", None)
    e.pop("BAREFLOW_STATE_FAULT", None)
    e.update(extra)
    return e


def generate(store, flags=(), **extra):
    # --jit-sync: compiles on the forward thread, so that what run 1 reaches does not depend on the
    # machine's load. --jit is not given: with a store, tiered is the default.
    jit = ["--jit-sync", "--trace-jit"] if JIT else []
    return subprocess.run([BAREFLOW, "generate"] + MODEL + GREEDY + ["--state", store] + jit + list(flags),
                          capture_output=True, timeout=300, env=env(**extra))


def state(cmd, store, *more):
    return subprocess.run([BAREFLOW, "state", cmd, "--state", store] + list(more), capture_output=True, timeout=60,
                          env=env())


def report(store):
    r = state("report", store, "--json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return []


def fresh(name):
    path = os.path.join(TMP, name)
    if os.path.exists(path):
        os.remove(path)
    return path


def stderr_of(r):
    return r.stderr.decode(errors="replace")


def test_warm_start():
    store = fresh("warm.bfs")
    runs = [generate(store) for _ in range(3)]
    for i, r in enumerate(runs, 1):
        check(f"run {i}: exit 0 and the golden text", r.returncode == 0 and r.stdout == GOLDEN, stderr_of(r))
    rows = report(store)
    check("report has one record per run", [x.get("run") for x in rows] == [1, 2, 3], rows)
    if len(rows) != 3:
        return store
    keys = ["run", "model", "compiles", "loaded", "time_to_first_token_s", "time_to_top_tier_s", "decode_tok_s",
            "compile_ms", "converged", "state_bytes"]
    check("report records have exactly the issue's keys", all(list(x) == keys for x in rows), list(rows[0]))
    check("records name the model file", all(x["model"] == "stories260K.bin" for x in rows), rows[0]["model"])
    check("converged by run 3, not before", [x["converged"] for x in rows] == [False, False, True], rows)
    if JIT:
        check("run 1 compiles", rows[0]["compiles"] > 0 and rows[0]["loaded"] == 0, rows[0])
        check("run 2 compiles nothing and loads every site", rows[1]["compiles"] == 0 and rows[1]["loaded"] == 8,
              rows[1])
        check("run 2 took its variants from the store", stderr_of(runs[1]).count("from the store") == 8,
              stderr_of(runs[1]))
        check("run 3 compiles nothing", rows[2]["compiles"] == 0 and rows[2]["compile_ms"] == 0, rows[2])
    v = state("verify", store)
    check("state verify passes after three runs", v.returncode == 0, v.stdout + v.stderr)
    show = state("show", store)
    check("state show says converged", b"converged" in show.stdout and b"still moving" not in show.stdout,
          show.stdout)
    return store


def test_fused_warm_start():
    if not JIT:
        print("skip fused warm start: this bareflow has no JIT")
        return
    store = fresh("fused.bfs")
    r1 = generate(store, ["--jit=O3"])
    r2 = generate(store, ["--jit=O3"])
    check("O3 run 2: golden text", r2.returncode == 0 and r2.stdout == GOLDEN, stderr_of(r2))
    rows = report(store)
    ok = len(rows) == 2 and rows[1]["compiles"] == 0 and rows[1]["loaded"] == 10 and rows[1]["time_to_top_tier_s"] == 0
    check("O3 run 2: 8 sites and both fused groups loaded, top tier from the start", ok, rows)
    check("O3 run 2: fused groups ran from the store",
          "qkv        fused O3 from the store" in stderr_of(r2) and "w13        fused O3 from the store" in stderr_of(r2),
          stderr_of(r2))
    check("O3 run 1: compiled the fused groups", "fused  -> O3" in stderr_of(r1), stderr_of(r1))


def test_flags():
    store = fresh("none.bfs")
    r = subprocess.run([BAREFLOW, "generate"] + MODEL + GREEDY + ["--no-state"] + (["--trace-jit"] if JIT else []),
                       capture_output=True,
                       timeout=300, env=env(BAREFLOW_STATE=store))
    check("--no-state: golden text, no store written, JIT off by default",
          r.returncode == 0 and r.stdout == GOLDEN and not os.path.exists(store) and b"jit summary" not in r.stderr,
          stderr_of(r))
    for value in ["0", "lots", "-5", "2T"]:
        r = subprocess.run([BAREFLOW, "generate"] + MODEL + ["--state-max", value], capture_output=True, timeout=60,
                           env=env())
        lines = r.stderr.decode().strip().split("\n")
        check(f"--state-max {value}: one line, exit 2", r.returncode == 2 and len(lines) == 1 and "--state-max" in lines[0],
              r.stderr)
    d = os.path.join(TMP, "a-directory")
    os.makedirs(d, exist_ok=True)
    for name, path, want in [("a directory", d, "Is a directory"),
                             ("a file that is not a store", MODEL[0], "not a BareFlow state store")]:
        r = generate(path)
        lines = stderr_of(r).strip().split("\n")
        check(f"--state naming {name}: one line, exit 2", r.returncode == 2 and len(lines) == 1 and want in lines[0],
              stderr_of(r))
    before = open(MODEL[0], "rb").read(64)
    check("the model named as a store is untouched", open(MODEL[0], "rb").read(64) == before)
    # The default location, unusable (its parent is a file): a note, and the run goes on.
    blocker = os.path.join(TMP, "blocker")
    open(blocker, "w").close()
    r = subprocess.run([BAREFLOW, "generate"] + MODEL + GREEDY, capture_output=True, timeout=300,
                       env=env(XDG_CACHE_HOME=blocker))
    check("an unusable default store: a note, the golden text, exit 0",
          r.returncode == 0 and r.stdout == GOLDEN and b"running without a store" in r.stderr, stderr_of(r))


def records(data):
    """(offset, total bytes, kind, key) of each record in the log, parsed as docs/STATE.md lays it out."""
    out = []
    at = 8192
    while at + 24 <= len(data):
        magic, kind, _flags, klen, vlen, _crc, _res = struct.unpack_from("<IHHIIII", data, at)
        if magic != 0x43524642:
            break
        total = (24 + klen + vlen + 7) & ~7
        out.append((at, total, kind, data[at + 24:at + 24 + klen]))
        at += total
    return out


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def after_damage(name, store, want_problem=True):
    """The run after damage: golden text, the damage reported (one line each), nothing rejected, and
    `state verify` passing on what the run left."""
    r = generate(store)
    err = stderr_of(r)
    ok = r.returncode == 0 and r.stdout == GOLDEN and "rejected by verification" not in err
    if want_problem:
        ok = ok and "bareflow: state:" in err
    check(f"{name}: golden text, damage reported, nothing rejected", ok, err)
    v = state("verify", store)
    check(f"{name}: state verify passes after the run", v.returncode == 0, v.stdout + v.stderr)


def test_damage(good):
    data = open(good, "rb").read()
    recs = records(data)
    check("the store has model, variant and run records", {k for _, _, k, _ in recs} >= ({1, 2, 3} if JIT else {1, 3}),
          recs)

    def damaged(name, mutate):
        path = fresh(name.replace(" ", "-") + ".bfs")
        b = bytearray(data)
        mutate(b)
        open(path, "wb").write(bytes(b))
        return path

    def flip(at):
        return lambda b: b.__setitem__(at, b[at] ^ 0x5A)

    # One damaged slot beside a valid one is what a crash during a commit leaves: not reported.
    after_damage("superblock A flipped", damaged("sb-a", flip(20)), want_problem=False)
    after_damage("superblock B flipped", damaged("sb-b", flip(4096 + 20)), want_problem=False)
    after_damage("both superblocks flipped", damaged("sb-ab", lambda b: (flip(20)(b), flip(4096 + 20)(b))))
    # One record of each kind: its header, its key and its value.
    seen = set()
    for at, total, kind, key in recs:
        if kind in seen:
            continue
        seen.add(kind)
        for part, off in [("header", 10), ("key", 24 + len(key) // 2), ("value", total - 9)]:
            after_damage(f"kind {kind} record {part} flipped", damaged(f"rec-{kind}-{part}", flip(at + off)))
    # Truncation at every record boundary (and mid-record): the log's tail is lost, never misread.
    cuts = [at for at, _, _, _ in recs] + [recs[-1][0] + recs[-1][1] // 2] if recs else []
    for i, cut in enumerate(cuts):
        path = damaged(f"cut-{i}", lambda b: b.__delitem__(slice(cut, None)))
        v = state("verify", path)
        # A cut inside the live log is damage verify must report; one after it is not.
        r = generate(path)
        ok = r.returncode == 0 and r.stdout == GOLDEN and "rejected by verification" not in stderr_of(r)
        check(f"truncated at {cut}: golden text, nothing rejected", ok, stderr_of(r))
        v2 = state("verify", path)
        check(f"truncated at {cut}: state verify passes after the run", v2.returncode == 0, v2.stdout + v2.stderr)
        del v
    # A store of a newer format: refused whole (one line, exit 2), and left as it was.
    def newer(b):
        for base in (0, 4096):
            struct.pack_into("<I", b, base + 8, 99)
            struct.pack_into("<I", b, base + 52, crc32c(bytes(b[base:base + 52])))
    path = damaged("newer", newer)
    before = open(path, "rb").read()
    r = generate(path)
    lines = stderr_of(r).strip().split("\n")
    check("a newer format: one line naming it, exit 2", r.returncode == 2 and len(lines) == 1 and "newer" in lines[0],
          stderr_of(r))
    check("a newer format: the file is left as it was", open(path, "rb").read() == before)
    empty = fresh("empty.bfs")
    open(empty, "wb").close()
    r = generate(empty)
    check("an empty file: used as a new store", r.returncode == 0 and r.stdout == GOLDEN and len(report(empty)) == 1,
          stderr_of(r))


def after_crash(name, store):
    v = state("verify", store)
    check(f"{name}: state verify passes after the crash", v.returncode == 0, v.stdout + v.stderr)
    r = generate(store)
    err = stderr_of(r)
    check(f"{name}: the next run prints the golden text, nothing rejected",
          r.returncode == 0 and r.stdout == GOLDEN and "rejected by verification" not in err, err)
    v = state("verify", store)
    check(f"{name}: state verify passes after the next run", v.returncode == 0, v.stdout + v.stderr)


def test_crashes(good):
    trials = 0
    # A cold run (its first commit writes every variant) and a warm one (it rewrites the model record
    # and appends a run record): stopped at each operation in turn.
    for base_name, base, modes in [("cold", None, ["stop", "lose"]), ("warm", good, ["stop", "tear", "lose", "reorder"])]:
        for mode in modes:
            for n in range(1, 40):
                store = fresh(f"crash-{base_name}-{mode}-{n}.bfs")
                if base:
                    shutil.copy(base, store)
                r = generate(store, BAREFLOW_STATE_FAULT=f"{mode}:{n}")
                if r.returncode == 0:
                    break  # the run did fewer operations than n: every point of this mode was tried
                check(f"{base_name} run, {mode} at operation {n}: the crash exit", r.returncode == 86, stderr_of(r))
                after_crash(f"{base_name} run, {mode}:{n}", store)
                trials += 1
    check("at least 20 fault-point trials", trials >= 20, trials)
    rng = random.Random(SEED)
    for i in range(KILL_TRIALS):
        store = fresh(f"kill-{i}.bfs")
        if i % 2:
            shutil.copy(good, store)
        p = subprocess.Popen([BAREFLOW, "generate"] + MODEL + GREEDY + ["--state", store] +
                             (["--jit-sync"] if JIT else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env())
        time.sleep(rng.uniform(0.0, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        after_crash(f"SIGKILL trial {i}", store)
    print(f"crash trials: {trials} fault points, {KILL_TRIALS} SIGKILLs")


good = test_warm_start()
test_fused_warm_start()
test_flags()
test_damage(good)
test_crashes(good)
shutil.rmtree(TMP, ignore_errors=True)
if failures:
    print(f"{len(failures)} failed: " + ", ".join(failures[:20]))
    sys.exit(1)
print("all passed")
