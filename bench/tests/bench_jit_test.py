#!/usr/bin/env python3
"""bareflow bench --jit on the smallest real shape: the per-tier, tiered and AOT-ratio keys with positive
numbers. In a build without LLVM, --jit must fail with one line and exit 2; the test is then skipped
(exit 77)."""
import json
import subprocess
import sys

bareflow = sys.argv[1]
# Three pairs: the ratios are medians, so one run slowed by a test running beside this one (ctest -j)
# does not decide them.
r = subprocess.run([bareflow, "bench", "--jit", "--model-shape", "stories15M", "--format", "q8_0", "--threads", "1",
                    "--runs", "3", "--prompt", "16", "--json"], capture_output=True, timeout=300)
err = r.stderr.decode()
if "without LLVM" in err:
    assert r.returncode == 2 and len(err.strip().splitlines()) == 1, (r.returncode, err)
    print("skipped: built without the JIT")
    sys.exit(77)
if r.returncode != 0:
    sys.exit(f"bench --jit failed ({r.returncode}): {err}")
rows = json.loads(r.stdout)
assert len(rows) == 1, rows
row = rows[0]
for k in ["decode_tok_s", "jit_O0_tok_s", "jit_O1_tok_s", "jit_O2_tok_s", "jit_O3_tok_s", "jit_tiered_tok_s",
          "jit_vs_aot", "jit_tiered_vs_aot", "jit_time_to_top_s", "jit_compile_ms"]:
    assert row[k] > 0, (k, row)
assert row["jit_interp_tok_s"] is None, row
# Compiled code is orders of magnitude faster than LLVM's interpreter (measured 10^3-10^4x); a
# figure near 1 would mean the interpreter column timed compiled code.
assert row["jit_o3_vs_interp_wq"] > 50, row
# Paired-run ratios: the JIT runs the AOT kernels specialized, so it cannot be far from 1 either way
# unless a tier is broken (noise on a shared machine stays well inside this band).
for k in ["jit_vs_aot", "jit_tiered_vs_aot"]:
    assert 0.5 < row[k] < 2.0, (k, row)
print("ok")
