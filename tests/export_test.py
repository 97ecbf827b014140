#!/usr/bin/python3
"""bareflow export: from a converged store to an LLVM-free executable that prints the JIT's text.
stories260K (the golden text) and a synthetic stories15M Q8_0; the appliance refuses another model,
a CPU with features masked (BAREFLOW_TEST_CPU_MASK) and its own template; export refuses an
unconverged, a damaged and a missing store with one line.
usage: export_test.py BAREFLOW SYNTH_MODEL SHARED_MODELS_DIR"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from golden_text import golden_text  # noqa: E402

BAREFLOW, SYNTH, SHARED = (os.path.abspath(a) for a in sys.argv[1:4])
TEMPLATE = os.path.join(os.path.dirname(BAREFLOW), "bareflow-appliance")
TMP = tempfile.mkdtemp(prefix="bareflow-export-")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[-900:]), flush=True)
    if not ok:
        failures.append(name)


def run(cmd, **extra):
    env = dict(os.environ)
    for k in ("BAREFLOW_STATE", "BAREFLOW_STATE_FAULT", "BAREFLOW_TEST_CPU_MASK", "BAREFLOW_APPLIANCE"):
        env.pop(k, None)
    env.update(extra)
    return subprocess.run(cmd, capture_output=True, timeout=600, env=env)


def err(r):
    return r.stderr.decode(errors="replace")


def one_line_refusal(name, r, words):
    e = err(r).strip()
    check(name, r.returncode == 2 and len(e.splitlines()) == 1 and all(w in e for w in words) and not r.stdout,
          "rc=%d stderr=%r" % (r.returncode, e))


def converge(model_args, gen_flags, store, runs):
    for i in range(runs):
        r = run([BAREFLOW, "generate"] + model_args + gen_flags + ["--state", store, "--jit-sync"])
        if r.returncode != 0:
            check("generate run %d" % (i + 1), False, err(r))
            return None
    return r.stdout


def export_case(label, model_args, gen_flags, runs, golden=None):
    store = os.path.join(TMP, label + ".bfs")
    jit_text = converge(model_args, gen_flags, store, runs)
    if jit_text is None:
        return None, None
    out = os.path.join(TMP, label + "-appliance")
    r = run([BAREFLOW, "export", model_args[0], "--state", store, "-o", out])
    check(label + ": export", r.returncode == 0 and os.access(out, os.X_OK), err(r))
    if r.returncode != 0:
        return None, None
    # From the pruned template: one SIMD family (this CPU's best) and the model's format only.
    fmt = "gguf" if model_args[0].endswith(".gguf") else "llama2c"
    pruned = "bareflow-appliance-%s-%s" % (BEST_ISA, fmt)
    check(label + ": exported from " + pruned, ("(from %s)" % pruned) in err(r) and
          os.path.getsize(os.path.join(os.path.dirname(BAREFLOW), pruned)) < os.path.getsize(TEMPLATE), err(r))
    a = run([out, "generate"] + model_args + gen_flags)
    check(label + ": the appliance prints the JIT's text", a.returncode == 0 and a.stdout == jit_text,
          "rc=%d\n%r\n%r\n%s" % (a.returncode, a.stdout[:300], jit_text[:300], err(a)))
    units = run([out, "--version"]).stdout.count(b"\nunit ")
    check(label + ": every exported unit is installed", units > 0 and
          ("native code: %d units installed" % units) in err(a), "%d units; %s" % (units, err(a)))
    if golden is not None:
        check(label + ": the golden text", a.stdout == golden, a.stdout[:300])
    # Same text with the JIT's and the store's flags given (accepted, noted, ignored).
    b = run([out] + model_args + gen_flags + ["--jit=tiered", "--state", store, "--trace-jit"])
    check(label + ": generate's JIT flags are accepted", b.returncode == 0 and b.stdout == jit_text and
          "ignored" in err(b), err(b))
    v = run([out, "--version"])
    text = v.stdout.decode(errors="replace")
    check(label + ": --version names model, CPU and engine",
          v.returncode == 0 and "model: " + os.path.basename(model_args[0]) in text and "cpu: " in text and
          "engine: bareflow-engine-source:" in text and "unit " in text, text)
    # No LLVM inside: no symbols at all (stripped) and no LLVM strings.
    data = open(out, "rb").read()
    check(label + ": no LLVM in the appliance", b"LLVM" not in data and b"llvm::" not in data and
          b"libLLVM" not in data, "found LLVM bytes")
    nm = subprocess.run(["nm", out], capture_output=True)
    check(label + ": stripped", b"no symbols" in nm.stderr or nm.stdout.strip() == b"", nm.stdout[:200])
    return out, store


# kernels/dispatch.cpp's best_isa(), from /proc/cpuinfo's flags.
FLAGS = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
AVX2 = {"avx", "avx2", "fma", "f16c"} <= FLAGS
BEST_ISA = "avx512" if AVX2 and {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni"} <= FLAGS \
    else "avxvnni" if AVX2 and "avx_vnni" in FLAGS else "avx2" if AVX2 else "scalar"
golden = golden_text(SHARED)
S260 = [os.path.join(SHARED, "stories260K.bin"), "-z", os.path.join(SHARED, "tok512.bin")]
GREEDY = ["-t", "0", "-n", "200", "-i", "Once upon a time"]
app260, store260 = export_case("stories260K", S260, GREEDY, 4, golden)

# A synthetic stories15M Q8_0 (real shapes, random weights), its JIT at O3 from the first run.
s15 = os.path.join(TMP, "stories15M-q8_0.gguf")
subprocess.run([SYNTH, s15, "stories15M", "q8_0"], check=True, stdout=subprocess.DEVNULL)
S15 = [s15, "-z", os.path.join(SHARED, "tokenizer.bin")]
app15, store15 = export_case("stories15M-q8_0", S15, ["-t", "0", "-n", "40", "-i", "Once", "--jit=O3"], 3)

if app260:
    r = run([app260] + S260 + GREEDY)
    check("the appliance runs on this CPU", r.returncode == 0, err(r))
    # A CPU without the features the code was compiled for (faked): refused before any code runs.
    mask = "avx512f" if b"avx512f" in open("/proc/cpuinfo", "rb").read() else "avx2"
    one_line_refusal("refuses a CPU lacking " + mask, run([app260] + S260 + GREEDY, BAREFLOW_TEST_CPU_MASK=mask),
                     ["refusing to run", "lacks " + mask])
    # The template holds only the llama2.c loader: a GGUF file is refused before it is parsed.
    one_line_refusal("refuses another format", run([app260, os.path.join(SHARED, "stories260K-q8_0.gguf"), "-t", "0"]),
                     ["is a GGUF file", "reads only llama2.c model files"])
    # A damaged payload: one flipped byte near the end of the file.
    bad = os.path.join(TMP, "damaged-appliance")
    data = bytearray(open(app260, "rb").read())
    data[-100] ^= 0x55
    open(bad, "wb").write(data)
    os.chmod(bad, 0o755)
    one_line_refusal("refuses a damaged payload", run([bad] + S260 + GREEDY), ["checksum"])
one_line_refusal("the template refuses to run", run([TEMPLATE] + S260 + GREEDY), ["none is appended"])
if app15:
    one_line_refusal("refuses another model", run([app15, os.path.join(SHARED, "stories260K-q8_0.gguf"), "-t", "0"]),
                     ["refusing to run", "another model"])
if app260:
    one_line_refusal("the appliance refuses an unknown flag", run([app260, "--bogus"]), ["--bogus", "unknown flag"])

# Export's refusals.
unconverged = os.path.join(TMP, "unconverged.bfs")
converge(S260, GREEDY, unconverged, 1)
out = os.path.join(TMP, "refused-appliance")
one_line_refusal("export refuses an unconverged state", run([BAREFLOW, "export", S260[0], "--state", unconverged, "-o", out]),
                 ["has not converged", "--force"])
check("nothing written when refused", not os.path.exists(out))
r = run([BAREFLOW, "export", S260[0], "--state", unconverged, "-o", out, "--force"])
check("export --force exports it anyway", r.returncode == 0 and os.path.exists(out), err(r))
one_line_refusal("export refuses a missing store", run([BAREFLOW, "export", S260[0], "--state", os.path.join(TMP, "none.bfs"),
                                                        "-o", out]), ["no such store"])
if store260:
    damaged = os.path.join(TMP, "damaged.bfs")
    shutil.copy(store260, damaged)
    with open(damaged, "r+b") as f:  # a byte inside the first record after the superblocks
        f.seek(8192 + 64)
        b = f.read(1)
        f.seek(8192 + 64)
        f.write(bytes([b[0] ^ 0xff]))
    one_line_refusal("export refuses a damaged store", run([BAREFLOW, "export", S260[0], "--state", damaged, "-o", out]),
                     ["damaged"])
    one_line_refusal("export refuses another model's state", run([BAREFLOW, "export", os.path.join(SHARED, "stories260K-q8_0.gguf"),
                                                                  "--state", store260, "-o", out]), ["holds no runs"])
    one_line_refusal("export refuses to overwrite its input", run([BAREFLOW, "export", S260[0], "--state", store260, "-o", store260]),
                     ["would be overwritten"])
    one_line_refusal("export refuses a template of another engine",
                     run([BAREFLOW, "export", S260[0], "--state", store260, "-o", out], BAREFLOW_APPLIANCE=shutil.which("true")),
                     ["another build"])

# bareflow coverage: the functions a run executes, by breakpoint coverage (ptrace).
listing = os.path.join(TMP, "ran.txt")
r = run([BAREFLOW, "coverage", "--list", listing, "generate"] + S260 + GREEDY + ["--no-state", "--jit=off"])
if r.returncode == 3 and b"ptrace is not permitted" in r.stderr:
    print("SKIP coverage: ptrace is not permitted on this machine")
else:
    e = err(r)
    ran = open(listing).read().split() if os.path.exists(listing) else []
    check("coverage: the run under breakpoints prints the golden text", r.returncode == 0 and r.stdout == golden, e)
    check("coverage: one row per origin and a total", all(w in e for w in ("LLVM", "BareFlow", "libstdc++", "\nall ")), e)
    check("coverage: the forward pass ran, bareflow info did not",
          "_ZN2bf11Transformer7forwardEiii" in ran and "_ZN2bf3cli12cmd_generateEiPPc" in ran and
          "_ZN2bf3cli8cmd_infoEiPPc" not in ran, "%d functions listed" % len(ran))
    one_line_refusal("coverage without a command", run([BAREFLOW, "coverage"]), ["no command"])

shutil.rmtree(TMP, ignore_errors=True)
print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
