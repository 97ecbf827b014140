#!/usr/bin/python3
"""bench_signal_test.py BAREFLOW BENCH_SYNTH_MODEL: a signal while bench (or bench_synth_model)
writes a synthetic model leaves nothing behind. Each run gets a private TMPDIR; SIGINT, SIGTERM
and SIGHUP arrive at several moments of the write; the process must die by that signal and the
directory must end up empty. Also: bench_synth_model refuses an unknown type (one line, exit 2,
no file). Bounded: a few seconds in all."""
import os
import signal
import subprocess
import sys
import tempfile
import time

BAREFLOW, SYNTH = (os.path.abspath(a) for a in sys.argv[1:3])
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)


def interrupted(name, cmd, env, d, sig, delay):
    """Starts cmd, waits until its file exists, then `delay` s more, sends sig. True if the file was
    still being written when the signal went out."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not os.listdir(d) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    names = os.listdir(d)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    mid_write = bool(names) and b"bench: wrote" not in err
    left = os.listdir(d)
    check(f"{name}: {signal.Signals(sig).name} after {delay * 1000:.0f} ms leaves nothing",
          p.returncode == -sig and not left, f"exit {p.returncode}, left {left}, stderr {err[-200:]!r}")
    return mid_write


def main():
    # stories42M in F32 is ~200 MB: a write long enough (~0.2-0.4 s) to land signals inside it.
    bench = [BAREFLOW, "bench", "--model-shape", "stories42M", "--format", "f32", "--runs", "1", "--prompt", "2",
             "--decode", "2", "-T", "1"]
    mid = 0
    plan = [(signal.SIGINT, 0.0), (signal.SIGINT, 0.03), (signal.SIGINT, 0.1), (signal.SIGTERM, 0.01),
            (signal.SIGTERM, 0.06), (signal.SIGHUP, 0.02)]
    for sig, delay in plan:
        with tempfile.TemporaryDirectory(prefix="bf-bench-signal-") as d:
            mid += interrupted("bench", bench, dict(os.environ, TMPDIR=d), d, sig, delay)
    for sig, delay in [(signal.SIGINT, 0.02), (signal.SIGTERM, 0.05)]:
        with tempfile.TemporaryDirectory(prefix="bf-synth-signal-") as d:
            mid += interrupted("bench_synth_model", [SYNTH, os.path.join(d, "m.gguf"), "stories42M", "f32"],
                               os.environ, d, sig, delay)
    # Otherwise the test never saw a half-written file and proves nothing.
    check(f"{mid} of {len(plan) + 2} signals arrived while a model was half written", mid >= 2)

    with tempfile.TemporaryDirectory(prefix="bf-synth-bad-") as d:
        out = os.path.join(d, "m.gguf")
        for args, fragment in [(["stories15M", "q5_k"], "format: 'q5_k' is not one of f32, f16, q8_0, q4_0, llama2c-v0, llama2c-v2"),
                               (["stories7B", "f32"], "shape: unknown model shape 'stories7B'")]:
            r = subprocess.run([SYNTH, out] + args, capture_output=True, timeout=30)
            lines = r.stderr.decode(errors="replace").splitlines()
            check(f"bench_synth_model {' '.join(args)} is refused", r.returncode == 2 and len(lines) == 1 and
                  fragment in lines[0] and not os.listdir(d), f"exit {r.returncode}, {lines}, left {os.listdir(d)}")
    print(f"{len(failures)} failures" if failures else "all bench signal tests passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
