#!/usr/bin/env python3
"""first_byte.py CMD...: runs CMD, reports seconds to its first stdout byte and to its exit.
Used for the boot-to-first-token figures in docs/BENCHMARKS.md (unikernel section) (generate prints each token
as it is produced, so the first stdout byte is the first token)."""
import subprocess, sys, time

t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
first = p.stdout.read(1)
t1 = time.monotonic()
rest = p.stdout.read()
rc = p.wait()
t2 = time.monotonic()
print(f"first_byte_s={t1 - t0:.3f} total_s={t2 - t0:.3f} exit={rc} stdout_bytes={len(first) + len(rest)}")
