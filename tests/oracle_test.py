#!/usr/bin/python3
"""bareflow generate against tests/oracle/run_c_oracle.py, an independent transcription of
llama2.c run.c: for each model, prompt and sampling setting, stdout must be byte-identical.
The oracle first proves itself on the golden run.c output (md5 from the models README).
usage: oracle_test.py BAREFLOW SHARED_MODELS_DIR"""
import hashlib
import itertools
import os
import subprocess
import sys

GOLDEN_MD5 = "9b48d0eee92969e4a49c38938834de4d"  # ../shared/models/README.md
HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = [sys.executable, os.path.join(HERE, "oracle", "run_c_oracle.py")]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def main():
    bareflow, models = sys.argv[1], sys.argv[2]
    m, z = f"{models}/stories260K.bin", f"{models}/tok512.bin"
    golden = run(ORACLE + [m, "-z", z, "-t", "0", "-n", "200", "-i", "Once upon a time", "--safe-printf"])
    if hashlib.md5(golden).hexdigest() != GOLDEN_MD5:
        sys.exit("FAIL: the oracle does not reproduce run.c's golden output")

    pairs = [("stories260K.bin", "tok512.bin"), ("aidreams260K.bin", "aidreams-tok512.bin")]
    settings = [("0", "0.9", "1"), ("1.0", "0.9", "42"), ("0.8", "0", "7"), ("1.0", "1.0", "1234"),
                ("0.5", "0.5", "99"), ("1.3", "0.95", "2024")]
    prompts = ["Once upon a time", "", "Lily and Ben", "caf\u00e9 \U0001F600"]
    failures = 0
    for (model, tok), (t, p, s), prompt in itertools.product(pairs, settings, prompts):
        args = [f"{models}/{model}", "-z", f"{models}/{tok}", "-t", t, "-p", p, "-s", s, "-n", "256", "-i", prompt]
        want = run(ORACLE + args)
        got = run([bareflow, "generate"] + args)
        if got != want:
            failures += 1
            print(f"MISMATCH {model} -t {t} -p {p} -s {s} -i {prompt!r}\n  want {want[:120]!r}\n  got  {got[:120]!r}")
    total = len(pairs) * len(settings) * len(prompts)
    print(f"{total - failures}/{total} generations identical to the run.c oracle")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
