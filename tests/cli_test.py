#!/usr/bin/python3
"""End-to-end tests of the bareflow command: golden text through every format, and bad input
(corrupt model and tokenizer files, absurd shapes, bad flags), each of which must give exit
status 2 and exactly one stderr line naming the problem.
usage: cli_test.py BAREFLOW SHARED_MODELS_DIR DERIVED_MODELS_DIR"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from golden_text import golden_text  # noqa: E402

BAREFLOW, SHARED, DERIVED = (os.path.abspath(a) for a in sys.argv[1:4])
TMP = tempfile.mkdtemp(prefix="bareflow-cli-")
failures = []


def run(args, timeout=120):
    return subprocess.run([BAREFLOW] + args, capture_output=True, timeout=timeout)


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def shared_bytes(name):
    return open(os.path.join(SHARED, name), "rb").read()


def gguf_tensor_infos(data):
    """Offsets of each tensor info's fields in a GGUF v2/v3 file: {name: (dims_at, n_dims, type_at, offset_at)}."""
    version = struct.unpack_from("<I", data, 4)[0]
    assert version >= 2
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    at = 24
    kv = {}

    def string(at):
        n = struct.unpack_from("<Q", data, at)[0]
        return data[at + 8:at + 8 + n], at + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(at, t):
        if t in sizes:
            return at + sizes[t]
        if t == 8:
            return string(at)[1]
        et, n = struct.unpack_from("<IQ", data, at)
        at += 12
        for _ in range(n):
            at = value(at, et)
        return at

    for _ in range(n_kv):
        key, at = string(at)
        t = struct.unpack_from("<I", data, at)[0]
        kv[key.decode()] = (at + 4, t)
        at = value(at + 4, t)
    infos = {}
    for _ in range(n_tensors):
        name, at = string(at)
        nd = struct.unpack_from("<I", data, at)[0]
        infos[name.decode()] = (at + 4, nd, at + 4 + 8 * nd, at + 8 + 8 * nd)
        at += 4 + 8 * nd + 12
    return infos, kv


def patched(data, at, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def test_golden():
    golden = golden_text(SHARED)
    check("golden text is 465 bytes", len(golden) == 465, str(len(golden)))
    tok = os.path.join(SHARED, "tok512.bin")
    cases = [(os.path.join(SHARED, "stories260K.bin"), ["-z", tok]),
             (os.path.join(SHARED, "stories260K-f32.gguf"), []),
             (os.path.join(SHARED, "stories260K-f32.gguf"), ["-z", tok]),
             (os.path.join(DERIVED, "v1.bin"), ["-z", tok]),
             (os.path.join(DERIVED, "v0-unshared.bin"), ["-z", tok]),
             (os.path.join(DERIVED, "hf-v3.gguf"), []),
             (os.path.join(DERIVED, "f16-v3.gguf"), [])]
    for model, extra in cases:
        r = run(["generate", model] + extra + ["-t", "0", "-n", "200", "-i", "Once upon a time"])
        check(f"golden text: {os.path.basename(model)} {' '.join(extra[:1])}",
              r.returncode == 0 and r.stdout == golden, r.stdout[:80].decode(errors="replace"))
        check(f"tok/s on stderr: {os.path.basename(model)}", re.search(rb"achieved tok/s: [0-9.]+", r.stderr) is not None)
    # The llama2.c shorthand: the model as the first argument, long flags.
    r = run([os.path.join(SHARED, "stories260K.bin"), "--tokenizer", tok, "--temperature", "0", "--steps", "200",
             "--prompt", "Once upon a time"])
    check("bareflow MODEL shorthand with long flags", r.stdout == golden)
    # Quantized models: greedy decoding must follow the f32 path for the first sentences.
    for model, extra, agree in [("stories260K-q8_0.gguf", [], 150), ("stories260K-q8_runq.bin", ["-z", tok], 150),
                                (os.path.join(DERIVED, "q4_0-v3.gguf"), [], 60)]:
        path = model if os.path.isabs(model) else os.path.join(SHARED, model)
        r = run(["generate", path] + extra + ["-t", "0", "-n", "200", "-i", "Once upon a time"])
        check(f"quantized {os.path.basename(path)} agrees with f32 for {agree} bytes and keeps going",
              r.returncode == 0 and r.stdout[:agree] == golden[:agree] and len(r.stdout) > 300,
              r.stdout[:agree].decode(errors="replace"))
    r = run(["generate", os.path.join(SHARED, "llama-2-tiny-random.gguf"), "-t", "0", "-n", "30", "-i", "Hello"])
    check("llama-2-tiny-random.gguf generates", r.returncode == 0 and r.stdout.startswith(b"Hello") and len(r.stdout) > 20)


def test_info():
    r = run(["info", os.path.join(SHARED, "stories260K-q8_0.gguf")])
    out = r.stdout.decode()
    for want in ["GGUF v2", "dim:             64", "n_kv_heads:      4", "parameters:      292800",
                 "Q8_0", "bytes per token:", "tokenizer:       embedded"]:
        check(f"info shows {want!r}", r.returncode == 0 and want in out, out)
    r = run(["info", os.path.join(SHARED, "stories260K-q8_runq.bin")])
    check("info on runq file", r.returncode == 0 and "llama2.c v2" in r.stdout.decode() and "group size 8" in r.stdout.decode())
    for cmd in [["--help"], ["generate", "--help"], ["info", "--help"]]:
        r = run(cmd)
        check(f"{' '.join(cmd)} exits 0 with usage", r.returncode == 0 and b"usage" in r.stdout)
    r = run(["generate", os.path.join(SHARED, "stories260K.bin"), "-z", os.path.join(SHARED, "tok512.bin"),
             "-t", "0", "-n", "1000", "-i", "Once upon a time"])
    check("steps beyond the context are clamped with a note",
          r.returncode == 0 and b"-n 1000 exceeds the context length; using 512" in r.stderr, r.stderr.decode())


def bad_input_cases():
    m = shared_bytes("stories260K.bin")
    tok = os.path.join(SHARED, "tok512.bin")
    q8 = shared_bytes("stories260K-q8_0.gguf")
    infos, kv = gguf_tensor_infos(q8)
    ak42 = open(os.path.join(DERIVED, "v1.bin"), "rb").read()
    v0 = lambda i, v: write(f"v0-field{i}-{v}.bin", patched(m, 4 * i, "<i", v))
    v1 = lambda i, v: write(f"v1-field{i}-{v}.bin", patched(ak42, 8 + 4 * i, "<i", v))
    gen = lambda path, *extra: ["generate", path, "-z", tok, "-n", "4"] + list(extra)
    emb_len_at = kv["llama.embedding_length"][0]
    arch_at = kv["general.architecture"][0]
    os.makedirs(os.path.join(TMP, "a-directory"), exist_ok=True)
    # (name, args, message fragment)
    return [
        ("missing model file", gen("/nonexistent/model.bin"), "/nonexistent/model.bin: cannot open: No such file"),
        ("model is a directory", gen(os.path.join(TMP, "a-directory")), "not a regular file"),
        ("empty model file", gen(write("empty.bin", b"")), "empty.bin: file is empty"),
        ("tiny junk file", gen(write("junk10.bin", b"0123456789")), "too short for any supported format"),
        ("wrong magic / garbage", gen(write("garbage.bin", bytes(range(256)) * 64)), "unrecognized model file"),
        ("truncated v0 model", gen(write("trunc.bin", m[:100000])), "truncated"),
        ("truncated v0 classifier", gen(write("trunc-cls.bin", patched(m, 20, "<i", -512))), "truncated: wcls"),
        ("v0 zero hidden_dim", gen(v0(1, 0)), "hidden_dim must be positive, got 0"),
        ("v0 negative seq_len", gen(v0(6, -5)), "seq_len must be positive, got -5"),
        ("v0 heads do not divide dim", gen(v0(3, 7)), "dim 64 is not divisible by n_heads 7"),
        ("v0 kv heads do not divide heads", gen(v0(4, 3)), "n_heads 8 is not divisible by n_kv_heads 3"),
        ("v0 overflowing dim", gen(v0(0, 2**31 - 1)), "dim 2147483647 exceeds the limit"),
        ("v0 absurd vocab", gen(v0(5, -2**31)), "vocab_size must be positive"),
        ("v1 zero dim", gen(v1(0, 0)), "dim must be positive, got 0"),
        ("v1 negative layers", gen(v1(2, -1)), "n_layers must be positive, got -1"),
        ("v1 huge seq_len", gen(v1(6, 2**30)), "seq_len 1073741824 exceeds the limit"),
        ("ak42 unsupported version", gen(write("v3.bin", patched(ak42, 4, "<i", 3))),
         "unsupported llama2.c checkpoint version 3"),
        ("ak42 bad shared flag", gen(write("shared7.bin", patched(ak42, 36, "<B", 7))), "shared_classifier flag is 7"),
        ("v2 zero group size", gen(write("gs0.bin", patched(shared_bytes("stories260K-q8_runq.bin"), 37, "<i", 0))),
         "group size 0 is out of range"),
        ("GGUF unsupported version", gen(write("v4.gguf", patched(q8, 4, "<I", 4))), "unsupported GGUF version 4"),
        ("GGUF big-endian", gen(write("be.gguf", patched(q8, 4, ">I", 3))), "big-endian GGUF is not supported"),
        ("GGUF unsupported tensor type", gen(write("q4_1.gguf", patched(q8, infos["blk.0.attn_q.weight"][2], "<I", 3))),
         "tensor blk.0.attn_q.weight has unsupported type 3"),
        ("GGUF tensor data past end", gen(write("past.gguf", patched(q8, infos["output.weight"][3], "<Q", 1 << 20))),
         "tensor output.weight data (offset 1048576"),
        ("GGUF truncated data", gen(write("trunc.gguf", q8[:200000])), "lies past the end of the file"),
        ("GGUF truncated header", gen(write("trunc-head.gguf", q8[:3000])), "truncated GGUF"),
        ("GGUF zero dimension", gen(write("dim0.gguf", patched(q8, infos["blk.0.attn_q.weight"][0], "<Q", 0))),
         "has dimension 0"),
        ("GGUF wrong tensor shape", gen(write("shape.gguf", patched(q8, infos["blk.1.ffn_up.weight"][0], "<Q", 32))),
         "tensor blk.1.ffn_up.weight has shape [32, 172], expected [64, 172]"),
        ("GGUF zero embedding length", gen(write("emb0.gguf", patched(q8, emb_len_at, "<I", 0))),
         "dim must be positive, got 0"),
        ("GGUF other architecture", gen(write("gpt2.gguf", patched(q8, arch_at + 8, "<5s", b"gpt2x"))),
         "unsupported architecture 'gpt2x'"),
        ("GGUF absurd tensor count", gen(write("count.gguf", patched(q8, 8, "<Q", 1 << 40))), "tensor count"),
        ("tokenizer vocabulary mismatch",
         ["generate", os.path.join(SHARED, "stories260K.bin"), "-z", os.path.join(SHARED, "tokenizer.bin")],
         "tokenizer has 32000 tokens but the model's vocabulary has 512"),
        ("truncated tokenizer", ["generate", os.path.join(SHARED, "stories260K.bin"), "-z",
                                 write("tok-trunc.bin", open(tok, "rb").read()[:3000])], "truncated tokenizer"),
        ("tokenizer bad max length", ["generate", os.path.join(SHARED, "stories260K.bin"), "-z",
                                      write("tok-max.bin", patched(open(tok, "rb").read(), 0, "<i", -4))],
         "max_token_length -4 is out of range"),
        ("missing tokenizer", ["generate", os.path.join(SHARED, "stories260K.bin"), "-z", "/nonexistent/tok.bin"],
         "/nonexistent/tok.bin: cannot open"),
        ("prompt longer than the context", gen(os.path.join(SHARED, "stories260K.bin"), "-i", "the end " * 600),
         "longer than the context of 512 tokens"),
        ("bad temperature", gen(os.path.join(SHARED, "stories260K.bin"), "-t", "abc"), "-t: 'abc' is not a number"),
        ("negative temperature", gen(os.path.join(SHARED, "stories260K.bin"), "-t", "-1"), "temperature must be >= 0"),
        ("top-p out of range", gen(os.path.join(SHARED, "stories260K.bin"), "-p", "1.5"), "top-p must be in [0, 1]"),
        ("negative steps", gen(os.path.join(SHARED, "stories260K.bin"), "-n", "-3"), "-n: -3 is out of range"),
        ("negative seed", gen(os.path.join(SHARED, "stories260K.bin"), "-s", "-1"), "not a non-negative integer"),
        ("unknown flag", gen(os.path.join(SHARED, "stories260K.bin"), "--bogus"), "--bogus: unknown flag"),
        ("flag without value", ["generate", os.path.join(SHARED, "stories260K.bin"), "-z"], "-z: missing value"),
        ("two models", gen(os.path.join(SHARED, "stories260K.bin"), "other.bin"), "unexpected argument"),
        ("unknown command", ["frobnicate"], "unknown command 'frobnicate'"),
        ("info on a corrupt file", ["info", write("info-bad.gguf", q8[:3000])], "truncated GGUF"),
        ("info without a model", ["info"], "missing MODEL"),
        ("boot: unknown flag", ["boot", "--bogus"], "--bogus: unknown flag (see bareflow boot --help)"),
        ("boot: flag without value", ["boot", "--mem"], "--mem: missing value"),
        ("boot: bad timeout", ["boot", "--timeout", "soon"], "--timeout: 'soon' is not"),
        ("boot: bad machine", ["boot", "--machine", "q35"], "--machine: 'q35' is not microvm or pc"),
    ] + jit_flag_cases(gen(os.path.join(SHARED, "stories260K.bin")))


# Bad JIT flag values; a build without LLVM rejects every --jit* flag, with its own message.
def jit_flag_cases(gen):
    without_llvm = "built without LLVM" in run(gen + ["--jit=O3"]).stderr.decode(errors="replace")
    cases = [("jit: unknown mode", "--jit=fast", "'fast' is not off, interp, tiered or O0..O3"),
             ("jit: bad start tier", "--jit-start=O2", "'O2' is not interp or aot"),
             ("jit: three thresholds", "--jit-thresholds=1,2,3", "expects 4 comma-separated numbers"),
             ("jit: decreasing thresholds", "--jit-thresholds=1,5,3,9", "thresholds must not decrease"),
             ("jit: bad fuse value", "--jit-fuse=maybe", "'maybe' is not on or off")]
    return [(name, gen + ["--jit=tiered", flag], "built without LLVM" if without_llvm else fragment)
            for name, flag, fragment in cases]


def test_bad_input():
    for name, args, fragment in bad_input_cases():
        r = run(args)
        err = r.stderr.decode(errors="replace")
        lines = err.splitlines()
        ok = (r.returncode == 2 and len(lines) == 1 and lines[0].startswith("bareflow: ") and fragment in lines[0]
              and r.stdout == b"")
        check(f"bad input: {name}", ok, f"exit {r.returncode}, stderr {err!r}, want {fragment!r}")
    r = run([])
    check("no arguments: usage and exit 2", r.returncode == 2 and b"usage" in r.stderr)


# ---- [harden] bad input that used to crash, hang, print raw bytes or exhaust memory ----

def gguf_string(b):
    return struct.pack("<Q", len(b)) + b


def write_gguf(name, kv, tensors, data):
    """A GGUF v3 file: kv = [(key, type, value bytes)], tensors = [(name, dims, ggml type, offset)]."""
    out = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kv))]
    for key, t, v in kv:
        out += [gguf_string(key.encode()), struct.pack("<I", t), v]
    for tname, dims, t, off in tensors:
        out += [gguf_string(tname.encode()), struct.pack("<I", len(dims)), struct.pack(f"<{len(dims)}Q", *dims),
                struct.pack("<IQ", t, off)]
    head = b"".join(out)
    return write(name, head + b"\0" * (-len(head) % 32) + data)


def tiny_llama(name, layers, vocab, context, tokens=None, extra_kv=()):
    """dim 64, 8 heads, hidden 64; every layer's matrices share one 64x64 block (offsets may alias)."""
    u32 = lambda v: struct.pack("<I", v)
    kv = [("general.architecture", 8, gguf_string(b"llama")), ("llama.embedding_length", 4, u32(64)),
          ("llama.feed_forward_length", 4, u32(64)), ("llama.block_count", 4, u32(layers)),
          ("llama.attention.head_count", 4, u32(8)), ("llama.context_length", 4, u32(context))]
    if tokens is not None:
        kv.append(("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) +
                   b"".join(gguf_string(t) for t in tokens)))
    kv += list(extra_kv)
    emb = vocab * 64 * 4
    norm, mat = emb, emb + 256
    tensors = [("token_embd.weight", (64, vocab), 0, 0), ("output_norm.weight", (64,), 0, norm)]
    for l in range(layers):
        tensors += [(f"blk.{l}.{n}_norm.weight", (64,), 0, norm) for n in ("attn", "ffn")]
        tensors += [(f"blk.{l}.{n}.weight", (64, 64), 0, mat)
                    for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up")]
    data = struct.pack(f"<{vocab * 64}f", *[0.01 * (i % 7) for i in range(vocab * 64)]) + \
        struct.pack("<64f", *[1.0] * 64) + struct.pack("<4096f", *[0.001 * (i % 13) for i in range(4096)])
    return write_gguf(name, kv, tensors, data)


def check_one_line(name, r, fragment):
    err = r.stderr.decode(errors="replace")
    lines = err.splitlines()
    ok = r.returncode == 2 and len(lines) == 1 and lines[0].startswith("bareflow: ") and fragment in lines[0]
    check(name, ok, f"exit {r.returncode}, stderr {err!r}, want {fragment!r}")


def test_special_token_ids():
    one = tiny_llama("one-token.gguf", 1, 1, 64, tokens=[b"a"])
    check_one_line("GGUF: one token, no BOS key", run(["generate", one, "-n", "4"]),
                   "one-token.gguf: tokenizer.ggml.bos_token_id is missing and its default 1 is not a token id "
                   "of the 1-token vocabulary")
    eos = tiny_llama("bad-eos.gguf", 1, 4, 64, tokens=[b"a", b"b", b"c", b"d"],
                     extra_kv=[("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 9))])
    check_one_line("GGUF: EOS id past the vocabulary", run(["generate", eos, "-n", "4"]),
                   "tokenizer.ggml.eos_token_id = 9 is not a token id of the 4-token vocabulary")
    v0 = write("one-token.bin", patched(shared_bytes("stories260K.bin"), 20, "<i", 1))
    tok = write("one-token-tok.bin", struct.pack("<ifi", 8, 0.0, 1) + b"a")
    check_one_line("llama2.c: one token", run(["generate", v0, "-z", tok, "-n", "4"]),
                   "one-token-tok.bin: BOS token id 1 is not in the vocabulary of 1 token")


def test_special_files():
    fifo = os.path.join(TMP, "a-fifo")
    os.mkfifo(fifo)
    m = os.path.join(SHARED, "stories260K.bin")
    for name, args in [("model", ["generate", fifo]), ("-z", ["generate", m, "-z", fifo]), ("info", ["info", fifo])]:
        try:
            check_one_line(f"FIFO as {name} is refused at once", run(args, timeout=10), "a-fifo: not a regular file")
        except subprocess.TimeoutExpired:
            check(f"FIFO as {name} is refused at once", False, "hung")
    check_one_line("character device as model", run(["generate", "/dev/zero"]), "/dev/zero: not a regular file")


def test_truncated_while_running():
    """The model is truncated while generate is blocked writing its first token (a full pipe),
    so the next forward pass touches pages past the new end: deterministic, no timing."""
    import fcntl
    model = write("shrinks.gguf", shared_bytes("stories260K-q8_0.gguf"))
    r_fd, w_fd = os.pipe()
    fcntl.fcntl(w_fd, 1031, 4096)  # F_SETPIPE_SZ: one page
    os.set_blocking(w_fd, False)
    try:
        while True:
            os.write(w_fd, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w_fd, True)
    p = subprocess.Popen([BAREFLOW, "generate", model, "-t", "0", "-n", "400"], stdout=w_fd,
                         stderr=subprocess.PIPE)
    os.close(w_fd)
    blocked = False
    for _ in range(2000):  # until it sits in write(1, ...): the model is loaded and in use
        try:
            with open(f"/proc/{p.pid}/syscall") as f:
                fields = f.read().split()
            if len(fields) > 1 and fields[0] == "1" and fields[1] == "0x1":
                blocked = True
                break
        except OSError:
            pass
        time.sleep(0.005)
    os.truncate(model, 0)
    with os.fdopen(r_fd, "rb") as out:
        out.read()
    err = p.stderr.read().decode(errors="replace")
    p.wait(timeout=60)
    lines = err.splitlines()
    check("model truncated during generate: one line, exit 2",
          blocked and p.returncode == 2 and len(lines) == 1 and
          lines[0] == f"bareflow: {model}: changed while in use (truncated by another process while mapped)",
          f"blocked {blocked}, exit {p.returncode}, stderr {err!r}")


def test_escaped_strings():
    m = os.path.join(SHARED, "stories260K.bin")
    q8 = shared_bytes("stories260K-q8_0.gguf")
    infos, kv = gguf_tensor_infos(q8)
    arch_at = kv["general.architecture"][0]
    name_at = infos["blk.0.attn_q.weight"][0] - 4 - len("blk.0.attn_q.weight")
    bad_name = patched(patched(q8, name_at + 5, "<B", 10), infos["blk.0.attn_q.weight"][0], "<Q", 0)
    hf = open(os.path.join(DERIVED, "hf-v3.gguf"), "rb").read()
    layout_at = gguf_tensor_infos(hf)[1]["llama.tensor_data_layout"][0]
    cases = [
        ("flag value with a newline", ["generate", m, "-t", "1\n2"], "-t: '1\\n2' is not a number"),
        ("path with newline and ESC", ["generate", "/nonexistent/a\nb\x1b[31mc.bin"],
         "/nonexistent/a\\nb\\x1b[31mc.bin: cannot open"),
        ("unknown command with a newline", ["frob\nx"], "unknown command 'frob\\nx'"),
        ("GGUF architecture with NUL, ESC, newline",
         ["generate", write("arch-nul.gguf", patched(q8, arch_at + 8, "<5s", b"l\0\x1b\nx"))],
         "unsupported architecture 'l\\0\\x1b\\nx'"),
        ("GGUF tensor name with a newline", ["generate", write("name-nl.gguf", bad_name)],
         "tensor blk.0\\nattn_q.weight has dimension 0"),
        ("GGUF layout with ESC and newline",
         ["generate", write("layout-esc.gguf", patched(hf, layout_at + 8, "<2s", b"\x1b\n"))],
         "unsupported llama.tensor_data_layout '\\x1b\\n'"),
    ]
    for name, args, fragment in cases:
        r = run(args)
        check_one_line(f"escaped: {name}", r, fragment)
        check(f"escaped: {name}: no raw control bytes", not re.search(rb"[\x00-\x09\x0b-\x1f]", r.stderr))
    odd = write("m\nx\x1b.gguf", q8)
    r = run(["info", odd])
    out = r.stdout.decode(errors="replace")
    check("info escapes the file name", r.returncode == 0 and "m\\nx\\x1b.gguf" in out and "\x1b" not in out and
          out.splitlines()[0].startswith("file:") and out.splitlines()[1].startswith("format:"), out[:200])


def test_memory_bounds():
    # A KV cache larger than the machine: 64 layers x 1048576 positions x 64 = 32 GiB.
    deep = tiny_llama("deep.gguf", 64, 32, 1 << 20, tokens=[bytes([97 + i % 26]) * (1 + i // 26) for i in range(32)])
    r = run(["generate", deep, "-t", "0", "-n", "8", "-i", "a"])
    check("deep model with a huge context runs at -n 8", r.returncode == 0, r.stderr.decode(errors="replace"))
    check_one_line("KV cache larger than memory", run(["generate", deep, "-n", "0"]),
                   "deep.gguf: 1048576 positions (-n; 0 = the context length of 1048576) need 32.0 GiB of KV cache: more than")
    # Under an address-space limit (not with ASan, which cannot start under one).
    import resource
    q8 = shared_bytes("stories260K-q8_0.gguf")
    ctx = write("ctx1m.gguf", patched(q8, gguf_tensor_infos(q8)[1]["llama.context_length"][0], "<I", 1 << 20))
    limit = lambda gib: (lambda: resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30), int(gib * 2**30))))
    probe = subprocess.run([BAREFLOW, "--help"], capture_output=True, preexec_fn=limit(1.0))
    if probe.returncode == 0:
        for gib, why in [(1.0, "more than the 1.0 GiB address-space limit (ulimit)"), (1.27, "it cannot be allocated")]:
            r = subprocess.run([BAREFLOW, "generate", ctx, "-n", "0", "-T", "1"], capture_output=True,
                               preexec_fn=limit(gib), timeout=120)
            check_one_line(f"KV cache under ulimit -v {gib} GiB", r,
                           "ctx1m.gguf: 1048576 positions (-n; 0 = the context length of 1048576) need 1.2 GiB of KV cache: "
                           + why)
    else:
        print("skip KV cache under ulimit -v: this build cannot run under an address-space limit (ASan)")
    # A 64 MiB vocabulary array (8M empty strings) on a 512-token model: refused, memory bounded.
    tokens = struct.pack("<IQ", 8, 1 << 23) + b"\0" * (8 << 23)
    big = tiny_llama("vocab64m.gguf", 1, 512, 64, extra_kv=[("tokenizer.ggml.tokens", 9, tokens)])
    # Peak RSS from wait4 in a fresh small interpreter: a child forked from this one would count
    # this process's pages (the 64 MiB test file's bytes) as its own.
    meter = ("import os, sys; pid = os.fork()\n"
             "if pid == 0: os.execv(sys.argv[1], sys.argv[1:])\n"
             "_, st, ru = os.wait4(pid, 0); sys.stdout.write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))")
    del tokens
    r = subprocess.run([sys.executable, "-c", meter, BAREFLOW, "generate", big, "-n", "4"], capture_output=True)
    maxrss = int(r.stdout or b"0")
    r.stdout = b""
    check_one_line("64 MiB vocabulary array refused", r,
                   "vocab64m.gguf: embedded tokenizer has 8388608 tokens but token_embd.weight has 512")
    # The file is mapped (64 MiB of it read); nothing proportional to the entry count is built.
    check("64 MiB vocabulary array: peak RSS under 200 MB", 0 < maxrss < 200 * 1024, f"{maxrss} KiB")


# --profile-json is checked before the model is loaded: a directory, an unwritable path and an input
# file (the model, the tokenizer, by name or by hard link) are refused at once, and leave the file
# system as it was. The run still writes the JSON at the end.
def test_profile_json():
    model = os.path.join(SHARED, "stories260K.bin")
    tok = os.path.join(SHARED, "tok512.bin")
    d = os.path.join(TMP, "profile-json")
    os.makedirs(d, exist_ok=True)
    model_copy = write("profile-json/model.bin", shared_bytes("stories260K.bin"))
    tok_copy = write("profile-json/tok512.bin", open(tok, "rb").read())  # also the one guessed beside model_copy
    model_link = os.path.join(d, "model-link.bin")
    os.link(model_copy, model_link)
    gen = lambda m, out, *extra: ["generate", m, "-n", "8", "-t", "0", "--profile-json", out] + list(extra)
    cases = [
        ("a directory", gen(model, d, "-z", tok), d + ": Is a directory"),
        ("under a missing directory", gen(model, "/nonexistent-dir/p.json", "-z", tok), "No such file or directory"),
        ("under /proc", gen(model, "/proc/bareflow-profile.json", "-z", tok), "/proc/bareflow-profile.json: "),
        ("the model itself", gen(model_copy, model_copy, "-z", tok), "is the model (" + model_copy + ")"),
        ("a hard link to the model", gen(model_copy, model_link, "-z", tok), "is the model"),
        ("the -z tokenizer", gen(model, tok_copy, "-z", tok_copy), "is the tokenizer (" + tok_copy + ")"),
        ("the tokenizer found beside the model", gen(model_copy, tok_copy), "is the tokenizer (" + tok_copy + ")"),
    ]
    before = {p: open(p, "rb").read() for p in (model_copy, tok_copy)}
    for name, args, fragment in cases:
        r = run(args)
        lines = r.stderr.decode(errors="replace").splitlines()
        ok = r.returncode == 2 and len(lines) == 1 and fragment in lines[0] and r.stdout == b""
        check(f"--profile-json {name} is refused before generating", ok,
              f"exit {r.returncode}, stdout {r.stdout[:60]!r}, stderr {lines!r}, want {fragment!r}")
    for p, data in before.items():
        check(f"--profile-json leaves {os.path.basename(p)} unchanged", open(p, "rb").read() == data)
    check("--profile-json under /proc creates nothing", not os.path.exists("/proc/bareflow-profile.json"))
    # A failed run leaves no profile file behind; a good run replaces an existing file with the JSON.
    out = os.path.join(d, "p.json")
    r = run(gen("/nonexistent/model.bin", out))
    check("--profile-json: a failed run leaves no file", r.returncode == 2 and not os.path.exists(out))
    with open(out, "w") as f:
        f.write("old contents " * 1000)
    r = run(gen(model, out, "-z", tok))
    try:
        sites = json.load(open(out))["sites"]
    except ValueError:
        sites = []
    check("--profile-json replaces an existing file with the profile", r.returncode == 0 and len(sites) > 0,
          f"exit {r.returncode}, {open(out).read()[:80]!r}")


# The repacked weights kept beside the store (state/weights_cache.cpp): written by the first run,
# read back by the next, each giving the text the file's own layout gives; a copy that no longer
# matches its model file (modified in place, replaced) is repacked again, and a damaged one (a flipped
# payload byte, a truncated file, a bad header) is one note, then repacked and rewritten.
def test_repacked_weights_cache():
    d = os.path.join(TMP, "weights-cache")
    os.makedirs(d, exist_ok=True)
    for name, src in [("q8_0", os.path.join(SHARED, "stories260K-q8_0.gguf")), ("q4_0", os.path.join(DERIVED, "q4_0-v3.gguf"))]:
        model = os.path.join(d, name + ".gguf")
        with open(model, "wb") as f:
            f.write(open(src, "rb").read())
        store = os.path.join(d, name + ".bfs")
        gen = ["generate", model, "-t", "0", "-n", "120", "-i", "Once upon a time"]
        want = run(gen + ["--no-state", "--no-repack"]).stdout
        check(f"weights cache {name}: the file's layout generates", len(want) > 200, repr(want[:60]))

        cache_dir = os.path.join(d, "repacked")
        jit = b"built without LLVM" not in run(gen + ["--no-state", "--trace-jit", "-n", "2"]).stderr

        def cached(label, expect, note=None):
            # What the run did, seen from the file (a save renames a new file into place) and, where
            # the JIT is built in, from --trace-jit's line.
            files = sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []
            before = os.stat(os.path.join(cache_dir, files[0])) if len(files) == 1 else None
            r = run(gen + ["--state", store] + (["--trace-jit"] if jit else []))
            err = r.stderr.decode(errors="replace")
            m = re.search(r"^weights: (\S+): (.*)$", err, re.M)
            notes = [l for l in err.splitlines() if l.startswith("bareflow: note:")]
            files = sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []
            after = os.stat(os.path.join(cache_dir, files[0])) if len(files) == 1 else None
            same = before is not None and after is not None and (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
            seen = "no file" if after is None else "loaded" if same else "repacked, saved"
            ok = (r.returncode == 0 and r.stdout == want and seen == expect and (not jit or (m and m.group(2) == expect)) and
                  (notes == [] if note is None else len(notes) == 1 and note in notes[0]))
            check(f"weights cache {name}: {label}: {expect}, same text", ok,
                  f"exit {r.returncode}, file {seen!r}, trace {m and m.group(2)!r}, notes {notes!r}, text {r.stdout[:40]!r}")
            return os.path.join(cache_dir, files[0]) if after else ""

        path = cached("first run", "repacked, saved")
        check(f"weights cache {name}: the copy is under the store's folder", os.path.isfile(path), path)
        if not os.path.isfile(path):
            continue
        size = os.path.getsize(path)
        cached("second run", "loaded")
        data = bytearray(open(path, "rb").read())
        data[size - 100] ^= 0x10
        open(path, "wb").write(data)
        cached("a flipped payload byte", "repacked, saved", "damaged repacked weights (payload checksum mismatch)")
        cached("after the rewrite", "loaded")
        os.truncate(path, size - 1)
        cached("a truncated copy", "repacked, saved", "damaged repacked weights (size")
        data = bytearray(open(path, "rb").read())
        data[20] ^= 1
        open(path, "wb").write(data)
        cached("a bad header", "repacked, saved", "damaged repacked weights (header checksum mismatch)")
        open(path, "wb").write(b"not weights at all")
        cached("another file in its place", "repacked, saved", "damaged repacked weights (not a repacked-weights file)")
        os.remove(path)
        os.mkfifo(path)  # opened without blocking, refused, replaced
        cached("a FIFO in its place", "repacked, saved", "damaged repacked weights (not a regular file)")
        # A run killed mid-write leaves its temporary file: the next save removes it once its process is gone.
        dead = path + ".tmp.999999999"
        open(dead, "wb").write(b"half a copy")
        # The model modified in place, shapes and size kept: the copy is stale, not damaged (no note).
        st = os.stat(model)
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000000))
        cached("the model file touched", "repacked, saved")
        cached("after the touch", "loaded")
        check(f"weights cache {name}: one file per model, no temporary left",
              sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)],
              repr(os.listdir(os.path.dirname(path))))
        r = run(["state", "show", "--state", store])
        check(f"weights cache {name}: state show counts the copy",
              f"repacked weights: 1 file, {size} bytes".encode() in r.stdout, r.stdout[:200].decode(errors="replace"))
        # state clear takes only what the cache writes: not other files in that folder.
        others = [os.path.join(cache_dir, n) for n in ("notes.bfw", "0123456789abcdeX.bfw", "0123456789abcdef.bfw")]
        for o in others:
            open(o, "wb").write(b"a user's file")
        r = run(["state", "clear", "--state", store])
        check(f"weights cache {name}: state clear leaves other files alone", all(os.path.exists(o) for o in others))
        for o in others:
            os.remove(o)
        check(f"weights cache {name}: state clear removes the copy",
              r.returncode == 0 and f"removed 1 repacked-weights file ({size} bytes)".encode() in r.stdout and
              not os.path.exists(path), r.stdout.decode(errors="replace"))


def main():
    test_golden()
    test_info()
    test_bad_input()
    test_special_token_ids()
    test_special_files()
    test_truncated_while_running()
    test_escaped_strings()
    test_memory_bounds()
    test_profile_json()
    test_repacked_weights_cache()
    print(f"{len(failures)} failures" if failures else "all CLI tests passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
