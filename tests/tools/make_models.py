#!/usr/bin/python3
"""Writes model files the shared models folder lacks, derived from stories260K.bin, for the tests.

Every variant carries the same weights (or a quantization of them), so tests can assert that each
format reproduces the golden text or stays within a stated tolerance of the f32 logits:
  v1.bin            llama2.c v1 ("ak42" version 1, fp32)
  v0-unshared.bin   llama2.c v0 with a separate classifier (negative vocab size)
  hf-v3.gguf        GGUF v3, F32, q/k rows in Hugging Face's permuted order, layout "hf"
  f16-v3.gguf       GGUF v3, F16 matrices, F16 norms, with the tok512 vocabulary embedded
  q4_0-v3.gguf      GGUF v3, Q4_0 matrices (dims that are multiples of 32), F32 rest
usage: make_models.py SHARED_MODELS_DIR OUT_DIR
"""
import os
import struct
import sys

import numpy as np


def read_v0(path):
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    assert vocab > 0, "expects a shared-classifier v0 model"
    f = np.frombuffer(raw, dtype=np.float32, offset=28)
    hs = dim // heads
    kv_dim = hs * kv_heads
    shapes = [
        ("emb", (vocab, dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
        ("wk", (layers, kv_dim, dim)), ("wv", (layers, kv_dim, dim)), ("wo", (layers, dim, dim)),
        ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
        ("w3", (layers, hidden, dim)), ("rms_final", (dim,)), ("freq", (seq * hs,)),
    ]
    w, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = f[at:at + n].reshape(shape)
        at += n
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq=seq)
    return cfg, w


def header7(c, vocab):
    return struct.pack("<7i", c["dim"], c["hidden"], c["layers"], c["heads"], c["kv_heads"], vocab, c["seq"])


def write_v1(path, c, w):
    head = struct.pack("<Ii", 0x616B3432, 1) + header7(c, c["vocab"]) + struct.pack("<B", 1)
    out = [head + b"\0" * (256 - len(head))]
    for name in ["rms_att", "rms_ffn", "rms_final", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]:
        out.append(w[name].astype(np.float32).tobytes())
    open(path, "wb").write(b"".join(out))


def write_v0_unshared(path, c, w):
    out = [header7(c, -c["vocab"])]
    for name in ["emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final", "freq"]:
        out.append(w[name].tobytes())
    out.append(w["emb"].tobytes())  # the classifier, stored separately
    open(path, "wb").write(b"".join(out))


def hf_permute(m, n_heads):
    rows, cols = m.shape
    return m.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def read_tokenizer(path):
    raw = open(path, "rb").read()
    at, toks, scores = 4, [], []
    while at < len(raw):
        score, n = struct.unpack("<fi", raw[at:at + 8])
        toks.append(raw[at + 8:at + 8 + n])
        scores.append(score)
        at += 8 + n
    return toks, scores


def f16_bits(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16).tobytes()


def q4_0(a):
    """GGML's reference Q4_0: per 32 values, d = max / -8 (max by magnitude), q = x/d + 8.5 clamped."""
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    idx = np.argmax(np.abs(x), axis=1)
    mx = x[np.arange(len(x)), idx]
    d = mx / -8.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.clip((x * inv[:, None] + 8.5).astype(np.int8), 0, 15).astype(np.uint8)
    nib = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    blocks = np.zeros(len(x), dtype=[("d", "<f2"), ("qs", "u1", 16)])
    blocks["d"] = d.astype(np.float16)
    blocks["qs"] = nib
    return blocks.tobytes()


def gguf_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, c, w, mat_type, layout=None, vocab=None, permute=False, norm_type="f32"):
    """mat_type: 'f32' | 'f16' | 'q4_0' for 2-D matrices."""
    kv = []

    def add(key, vtype, payload):
        kv.append(gguf_string(key) + struct.pack("<I", vtype) + payload)

    add("general.architecture", 8, gguf_string("llama"))
    add("llama.embedding_length", 4, struct.pack("<I", c["dim"]))
    add("llama.feed_forward_length", 4, struct.pack("<I", c["hidden"]))
    add("llama.block_count", 4, struct.pack("<I", c["layers"]))
    add("llama.attention.head_count", 4, struct.pack("<I", c["heads"]))
    add("llama.attention.head_count_kv", 4, struct.pack("<I", c["kv_heads"]))
    add("llama.context_length", 4, struct.pack("<I", c["seq"]))
    add("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))
    if layout:
        add("llama.tensor_data_layout", 8, gguf_string(layout))
    if vocab:
        toks, scores = vocab
        sp = [t.replace(b" ", "\u2581".encode()) for t in toks]
        add("tokenizer.ggml.model", 8, gguf_string("llama"))
        add("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(sp)) + b"".join(gguf_string(t) for t in sp))
        add("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(scores)) + np.asarray(scores, np.float32).tobytes())
        add("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1))
        add("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))

    tensors = []  # (name, dims ne0-first, ggml type, bytes)

    def mat(name, m):
        m = np.asarray(m, np.float32)
        ne = (m.shape[1], m.shape[0])
        if mat_type == "f16":
            tensors.append((name, ne, 1, f16_bits(m)))
        elif mat_type == "q4_0" and m.size % 32 == 0:
            tensors.append((name, ne, 2, q4_0(m)))
        else:
            tensors.append((name, ne, 0, m.tobytes()))

    def vec(name, v):
        if norm_type == "f16":
            tensors.append((name, (len(v),), 1, f16_bits(v)))
        else:
            tensors.append((name, (len(v),), 0, np.asarray(v, np.float32).tobytes()))

    hs = c["dim"] // c["heads"]
    mat("token_embd.weight", w["emb"])
    for l in range(c["layers"]):
        wq, wk = w["wq"][l], w["wk"][l]
        if permute:
            wq, wk = hf_permute(wq, c["heads"]), hf_permute(wk, c["kv_heads"])
        vec(f"blk.{l}.attn_norm.weight", w["rms_att"][l])
        mat(f"blk.{l}.attn_q.weight", wq)
        mat(f"blk.{l}.attn_k.weight", wk)
        mat(f"blk.{l}.attn_v.weight", w["wv"][l])
        mat(f"blk.{l}.attn_output.weight", w["wo"][l])
        vec(f"blk.{l}.ffn_norm.weight", w["rms_ffn"][l])
        mat(f"blk.{l}.ffn_gate.weight", w["w1"][l])
        mat(f"blk.{l}.ffn_down.weight", w["w2"][l])
        mat(f"blk.{l}.ffn_up.weight", w["w3"][l])
    vec("output_norm.weight", w["rms_final"])
    assert hs % 2 == 0

    infos, data, offset = [], [], 0
    for name, ne, t, payload in tensors:
        infos.append(gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
                     + struct.pack("<IQ", t, offset))
        pad = (-len(payload)) % 32
        data.append(payload + b"\0" * pad)
        offset += len(payload) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\0" * ((-len(head)) % 32)
    open(path, "wb").write(head + b"".join(data))


def main():
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    c, w = read_v0(os.path.join(shared, "stories260K.bin"))
    vocab = read_tokenizer(os.path.join(shared, "tok512.bin"))
    write_v1(os.path.join(out, "v1.bin"), c, w)
    write_v0_unshared(os.path.join(out, "v0-unshared.bin"), c, w)
    write_gguf(os.path.join(out, "hf-v3.gguf"), c, w, "f32", layout="hf", permute=True, vocab=vocab)
    write_gguf(os.path.join(out, "f16-v3.gguf"), c, w, "f16", vocab=vocab, norm_type="f16")
    write_gguf(os.path.join(out, "q4_0-v3.gguf"), c, w, "q4_0", vocab=vocab)


if __name__ == "__main__":
    main()
