#!/usr/bin/python3
"""Seed corpora for the fuzz targets from the shared models (written fresh on every run).
usage: make_seeds.py SHARED_MODELS_DIR OUT_DIR"""
import os
import shutil
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
for target, files in seeds.items():
    os.makedirs(os.path.join(out, target))
    for name, data in files.items():
        open(os.path.join(out, target, name), "wb").write(data)
