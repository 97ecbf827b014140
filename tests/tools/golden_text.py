#!/usr/bin/python3
"""Prints run.c's golden stories260K output, taken from the models README (its fenced block under
"Golden output"), so that no copy of it lives in this repository.
usage: golden_text.py [SHARED_MODELS_DIR]   (default: ../shared/models beside the checkout)"""
import os
import sys

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models")


def golden_text(shared=DEFAULT):
    readme = open(os.path.join(shared, "README.md"), encoding="utf-8").read()
    block = readme.split("## Golden output", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    return block.encode()


if __name__ == "__main__":
    sys.stdout.buffer.write(golden_text(sys.argv[1] if len(sys.argv) > 1 else DEFAULT))
