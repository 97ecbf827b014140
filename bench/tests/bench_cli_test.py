#!/usr/bin/env python3
"""bareflow bench --json on the smallest real shape: one JSON array whose rows carry every key the
issue names, with sane values."""
import json
import subprocess
import sys

bareflow = sys.argv[1]
r = subprocess.run([bareflow, "bench", "--model-shape", "stories15M", "--format", "q4_0,f32", "--threads", "1,2",
                    "--runs", "1", "--prompt", "16", "--decode", "4", "--json"], capture_output=True, timeout=280)
if r.returncode != 0:
    sys.exit(f"bench failed ({r.returncode}): {r.stderr.decode()}")
rows = json.loads(r.stdout)
keys = ["shape", "format", "threads", "decode_tok_s", "prefill_tok_s", "bytes_per_token", "bandwidth_gb_s",
        "roofline_tok_s", "pct_roofline", "peak_rss_mb"]
assert len(rows) == 4, rows
for row in rows:
    for k in keys:
        assert k in row, (k, row)
    assert row["shape"] == "stories15M"
    assert row["decode_tok_s"] > 0 and row["prefill_tok_s"] > 0 and row["bandwidth_gb_s"] > 0, row
    assert abs(row["roofline_tok_s"] - row["bandwidth_gb_s"] * 1e9 / row["bytes_per_token"]) < 1e-3 * row["roofline_tok_s"]
assert sorted((row["format"], row["threads"]) for row in rows) == [("F32", 1), ("F32", 2), ("Q4_0", 1), ("Q4_0", 2)]
bad = subprocess.run([bareflow, "bench", "--format", "q3_k"], capture_output=True)
assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1, bad
print("ok")
