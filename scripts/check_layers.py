#!/usr/bin/python3
"""check_layers.py SOURCE_DIR [--nm NM --lib LAYER=ARCHIVE ...]: the folder layering rule.

The layers, from the bottom: kernels, engine, profile, native, jit, state, bench, serve, cli. A folder may use only
the folders below it; tests/ (the whole-product tests) may use every layer; kernel/ (the unikernel)
stands alone: it uses nothing outside kernel/ and nothing uses it but cli/'s `bareflow boot`, through
the host launcher's header (KERNEL_DOOR). Since the order is total, a cycle
between folders always contains an edge that goes up, so it is reported too (with the cycle).

Checked, each violation one line, exit status 1 if there is any:
  - every #include of every source file, resolved to the folder of the file it names;
  - no #include of a .c/.cpp file (a source file is one translation unit, not a header);
  - every CMakeLists.txt: which bareflow_<folder> libraries it links and which other folders'
    files it names (a source compiled into another folder's target);
  - with --lib: the built archives' symbols, so that a use without an include (an extern
    declaration) is caught as well: a library may not need a symbol that only a library above it
    defines.
"""
import argparse
import os
import re
import subprocess
import sys

LAYERS = ["kernels", "engine", "profile", "native", "jit", "state", "bench", "serve", "cli"]
TOP = "tests"
ALONE = "kernel"
NOT_CODE = {"docs", "scripts"}
# The one door into kernel/: its host-side QEMU launcher (a host library, not kernel code), which
# `bareflow boot` (cli/) drives. The kernel itself still uses nothing outside kernel/.
KERNEL_DOOR = {("cli", "kernel/host/launch.h")}
SOURCE_EXT = (".h", ".hpp", ".c", ".cc", ".cpp", ".S")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
LINKED = re.compile(r"\bbareflow_([a-z]+)\b")
NAMED_PATH = re.compile(r"(?:\$\{CMAKE_SOURCE_DIR\}|\$\{[A-Z_]*ROOT\}|\.\.)/([A-Za-z_]+)/")


def rank(folder):
    return LAYERS.index(folder) if folder in LAYERS else None


def edge_error(src, dst):
    """Why folder src may not use folder dst, or None."""
    if src == dst:
        return None
    if src == ALONE or dst == ALONE:
        return "kernel/ stands alone"
    if dst == TOP:
        return "nothing may use tests/"
    if src == TOP:
        return None
    if rank(src) is None or rank(dst) is None:
        return f"{src if rank(src) is None else dst}/ is not in the layer order"
    if rank(dst) > rank(src):
        return f"{src} is below {dst}"
    return None


def top_folders(root):
    out = set()
    for name in os.listdir(root):
        if os.path.isdir(os.path.join(root, name)) and not name.startswith(".") and not name.startswith("build"):
            out.add(name)
    return out - NOT_CODE


def walk(root, folders):
    for folder in sorted(folders):
        for d, dirs, files in os.walk(os.path.join(root, folder)):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for f in sorted(files):
                yield folder, os.path.join(d, f)


def include_target(root, folders, path, kind, name):
    """The repository path an include names (None for system or external headers)."""
    if kind == '"':
        local = os.path.normpath(os.path.join(os.path.dirname(path), name))
        if os.path.isfile(local):
            return os.path.relpath(local, root)
    first = name.split("/")[0]
    if first in folders or first in LAYERS:
        return os.path.normpath(name)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--lib", action="append", default=[], metavar="LAYER=ARCHIVE")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    folders = top_folders(root)
    errors, edges = [], {}

    for folder in sorted(folders):
        if folder not in LAYERS and folder not in (TOP, ALONE):
            errors.append(f"{folder}/: a folder that is not in the layer order ({' < '.join(LAYERS)})")

    files = 0
    for folder, path in walk(root, folders):
        rel = os.path.relpath(path, root)
        if path.endswith(SOURCE_EXT):
            files += 1
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = include_target(root, folders, path, m.group(1), m.group(2))
                    if target is None:
                        continue
                    if target.endswith((".c", ".cc", ".cpp")):
                        errors.append(f"{rel}:{n}: includes the source file {target} (put what it shares in a header)")
                    dst = target.split("/")[0]
                    if (folder, target) in KERNEL_DOOR:
                        continue
                    edges.setdefault((folder, dst), f"{rel}:{n}")
                    why = edge_error(folder, dst)
                    if why:
                        errors.append(f"{rel}:{n}: includes {target}: {why}")
        elif os.path.basename(path) == "CMakeLists.txt":
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    code = line.split("#", 1)[0]
                    uses = [(m, "links bareflow_" + m) for m in LINKED.findall(code) if m in LAYERS]
                    uses += [(m, "names " + m + "/") for m in NAMED_PATH.findall(code) if m in folders]
                    for dst, what in uses:
                        edges.setdefault((folder, dst), f"{rel}:{n}")
                        why = edge_error(folder, dst)
                        if why:
                            errors.append(f"{rel}:{n}: {what}: {why}")

    # A cycle through a back-edge, for the reader (the back-edge itself is already an error).
    graph = {}
    for (s, d) in edges:
        if s != d:
            graph.setdefault(s, set()).add(d)
    for (s, d), where in sorted(edges.items()):
        if s == d or not edge_error(s, d) or rank(s) is None or rank(d) is None:
            continue
        stack, seen = [[d]], {d}
        while stack:
            p = stack.pop()
            if p[-1] == s:
                errors.append(f"cycle: {' -> '.join([s] + p)} (the back-edge {s} -> {d} at {where})")
                break
            for nxt in sorted(graph.get(p[-1], ())):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(p + [nxt])

    if a.lib:
        defined, undefined = {}, {}
        for spec in a.lib:
            layer, archive = spec.split("=", 1)
            if layer not in LAYERS:
                errors.append(f"--lib {spec}: {layer} is not a layer")
                continue
            out = subprocess.run([a.nm, "-A", "-g", archive], capture_output=True, text=True, check=True).stdout
            defs, undefs = set(), set()
            for line in out.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[-2] in ("U", "w"):
                    undefs.add(parts[-1])
                elif len(parts) >= 3:
                    defs.add(parts[-1])
            defined[layer], undefined[layer] = defs, undefs - defs
        for layer, undefs in undefined.items():
            below = set().union(*(defined[l] for l in defined if rank(l) <= rank(layer)))
            for sym in sorted(undefs - below):
                above = [l for l in defined if rank(l) > rank(layer) and sym in defined[l]]
                if above:
                    errors.append(f"libbareflow_{layer}.a needs {sym}, defined only above it in bareflow_{above[0]}")

    for e in errors:
        print("layers:", e)
    if errors:
        print(f"layers: {len(errors)} violation(s) of {' < '.join(LAYERS)} (kernel/ alone)")
        return 1
    print(f"layers: OK ({files} source files, {len(edges)} folder edges, {len(a.lib)} libraries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
