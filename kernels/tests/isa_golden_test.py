#!/usr/bin/env python3
"""Golden greedy text through the CLI with every ISA the CPU supports, 1 and 2 threads, with and
without batched prefill. The f32 llama2.c model must print the run.c golden text (md5); the other
stories260K models must print exactly what the scalar ISA prints for them. Unsupported ISAs must
be refused with one line and exit status 2."""
import hashlib
import subprocess
import sys

bareflow, models = sys.argv[1], sys.argv[2]
GOLDEN_MD5 = "9b48d0eee92969e4a49c38938834de4d"
failures = []


def run(model, *flags):
    cmd = [bareflow, "generate", f"{models}/{model}", "-z", f"{models}/tok512.bin", "-t", "0", "-n", "200",
           "-i", "Once upon a time", *flags]
    return subprocess.run(cmd, capture_output=True, timeout=120)


supported = []
for isa in ["scalar", "avx2", "avx512", "avxvnni"]:
    r = run("stories260K.bin", "--isa", isa, "-n", "2")
    if r.returncode == 0:
        supported.append(isa)
    elif r.returncode != 2 or len(r.stderr.decode().strip().splitlines()) != 1:
        failures.append(f"--isa {isa}: expected success or one error line with status 2, got {r.returncode}: {r.stderr!r}")
print("supported ISAs:", supported)

for model in ["stories260K.bin", "stories260K-f32.gguf", "stories260K-q8_0.gguf", "stories260K-q8_runq.bin"]:
    expected = None
    for isa in supported:
        for threads in ["1", "2"]:
            for prefill in [[], ["--no-prefill"]]:
                # both spellings of the flag: --isa X and --isa=X
                isa_flag = ["--isa", isa] if prefill else [f"--isa={isa}"]
                r = run(model, *isa_flag, "-T", threads, *prefill)
                what = f"{model} --isa {isa} -T {threads} {' '.join(prefill)}"
                if r.returncode != 0:
                    failures.append(f"{what}: exit {r.returncode}: {r.stderr.decode()}")
                    continue
                if expected is None:
                    expected = r.stdout
                    if model == "stories260K.bin" and hashlib.md5(r.stdout).hexdigest() != GOLDEN_MD5:
                        failures.append(f"{what}: md5 {hashlib.md5(r.stdout).hexdigest()} != golden {GOLDEN_MD5}")
                elif r.stdout != expected:
                    failures.append(f"{what}: text differs from --isa scalar -T 1:\n{r.stdout.decode()}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
