#!/usr/bin/python3
"""Seed corpora for the fuzz targets from the shared models (written fresh on every run).
usage: make_seeds.py SHARED_MODELS_DIR OUT_DIR"""
import os
import shutil
import struct
import sys

shared, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
read = lambda name: open(os.path.join(shared, name), "rb").read()
seeds = {
    "fuzz_llama2c": {"v0": read("stories260K.bin"), "v2": read("stories260K-q8_runq.bin"),
                     "aidreams": read("aidreams260K.bin")},
    "fuzz_gguf": {"v1": read("stories260K-f32.gguf")[4:], "v2": read("stories260K-q8_0.gguf")[4:]},
    "fuzz_tokenizer": {"tok512": b"\x01" + read("tok512.bin"), "aidreams": b"\x01" + read("aidreams-tok512.bin"),
                       "text": b"\x00Once upon a time, Lily \xc3\xa9 \xf0\x9f\x98\x80"},
}


def metadata(data):
    """The key count and key-value pairs of a GGUF v2/v3 file: the fuzz_gguf_vocab input."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    at = 24

    def value(at, t):
        if t in sizes:
            return at + sizes[t]
        if t == 8:
            return at + 8 + struct.unpack_from("<Q", data, at)[0]
        et, n = struct.unpack_from("<IQ", data, at)
        at += 12
        for _ in range(n):
            at = value(at, et)
        return at

    for _ in range(n_kv):
        at += 8 + struct.unpack_from("<Q", data, at)[0]
        at = value(at + 4, struct.unpack_from("<I", data, at)[0])
    return data[16:at]


q8 = read("stories260K-q8_0.gguf")
seeds["fuzz_gguf_vocab"] = {"q8_0": metadata(q8)}
seeds["fuzz_encode"] = {"text": b"\x00Once upon a time, Lily \xc3\xa9 \xf0\x9f\x98\x80",
                        "small": b"\x01The end. " * 20, "bytes": bytes(range(256))}
for target, files in seeds.items():
    os.makedirs(os.path.join(out, target))
    for name, data in files.items():
        open(os.path.join(out, target, name), "wb").write(data)
