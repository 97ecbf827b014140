#!/usr/bin/env python3
"""make demo: BareFlow's life in one command, on the default model.

Boots the unikernel with the big image (kernel + the 57 MB bareflow with LLVM) on a fresh disk
until the store on it says the model has converged (boot 1 tiers up with the synchronous JIT,
the next ones start warm), exports the appliance image from that disk on the host, and boots
the appliance as -kernel and from its GRUB ISO. Prints one row per boot: image size, boot to
first token (host wall clock, from starting QEMU to the first byte of text after the prompt),
the engine's own time to first token (from its start in the guest), decode tok/s, compiles, and the tiers the code ran at. Exits 1 if any boot fails
or prints another text.

    scripts/demo.py BAREFLOW [--accel auto|kvm|tcg] [--steps N] [--work DIR]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PROMPT = "Once upon a time"


def find_model():
    dirs = [d for d in (os.environ.get("BAREFLOW_MODELS"), "models", "../shared/models") if d]
    for name, tok in (("stories15M.bin", "tokenizer.bin"), ("stories260K.bin", "tok512.bin")):
        for d in dirs:
            if os.path.isfile(os.path.join(d, name)) and os.path.isfile(os.path.join(d, tok)):
                return os.path.join(d, name), os.path.join(d, tok)
    sys.exit("demo: no model: looked for stories15M.bin (+ tokenizer.bin) and stories260K.bin (+ tok512.bin) "
             "in $BAREFLOW_MODELS, ./models and ../shared/models")


def boot(argv):
    """Runs a boot; returns (stdout text, stderr text, seconds to the first token, exit status). The
    first token is the first byte of text after the prompt, which the engine echoes first. stderr
    goes to a file, so that a long log can never block the launcher on a full pipe."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf)
        first = None
        out = b""
        while True:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            if first is None and len(out) > len(PROMPT):
                first = time.monotonic() - start
        p.wait()
        errf.seek(0)
        err = errf.read()
    return out.decode(errors="replace"), err.decode(errors="replace"), first, p.returncode


def number(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def tiers_of(names):
    counts = {}
    for t in names:
        counts[t] = counts.get(t, 0) + 1
    return " ".join(f"{t} x{n}" for t, n in sorted(counts.items())) or "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bareflow")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=os.environ.get("ACCEL", "auto"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--work", default="build/demo")
    ap.add_argument("--max-boots", type=int, default=5)
    a = ap.parse_args()
    bf = os.path.abspath(a.bareflow)
    model, tok = find_model()
    # The work directory is the demo's own: refused when it holds anything else.
    marker = os.path.join(a.work, ".bareflow-demo")
    if os.path.isdir(a.work) and os.listdir(a.work) and not os.path.exists(marker):
        sys.exit(f"demo: {a.work} holds other files; give --work a new or empty directory")
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    open(marker, "w").close()
    disk, image = os.path.join(a.work, "disk.img"), os.path.join(a.work, "image")
    accel = [] if a.accel == "auto" else ["--" + a.accel]
    gen = ["-t", "0", "-n", str(a.steps), "-i", PROMPT]
    kernel = os.path.join(os.path.dirname(bf), "kernel", "bareflow-kernel.bin")
    big = os.path.getsize(kernel) + os.path.getsize(bf)
    rows, texts, used_tcg = [], [], False

    def row(name, size, out, err, first, status, compiles, tiers):
        nonlocal used_tcg
        if status != 0:
            sys.stderr.write(err)
            sys.exit(f"demo: {name}: exit status {status}")
        used_tcg |= "falling back to TCG" in err
        texts.append(out)
        rows.append((name, size, first, number(r"time to first token: ([0-9.]+)", err),
                     number(r"achieved tok/s: ([0-9.]+)", err), compiles, tiers))

    print(f"demo: {os.path.basename(model)}, greedy, {a.steps} positions, prompt {PROMPT!r}; work in {a.work}", flush=True)
    for n in range(1, a.max_boots + 1):
        out, err, first, status = boot([bf, "boot", *accel, "--disk", disk, "--", "generate", model, "-z", tok, *gen,
                                        "--jit-sync", "--trace-jit"])
        if status != 0:
            sys.stderr.write(err)
            sys.exit(f"demo: boot {n}: exit status {status}")
        m = re.search(r"state: /state: run (\d+), (\d+) compiles, (\d+) loaded, (.*)", err)
        if not m:
            sys.exit("demo: boot %d: no state line in the guest's log" % n)
        show = json.loads(subprocess.run([bf, "state", "show", "--state", disk, "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        sites = show["models"][0]["sites"] if show["models"] else []
        row(f"boot {n} (bareflow, disk)", big, out, err, first, status, int(m.group(2)),
            tiers_of(s["tier"] for s in sites))
        print(f"  boot {n}: {m.group(0)}", flush=True)
        if m.group(4).strip() == "converged":
            break
    else:
        sys.exit(f"demo: the state did not converge in {a.max_boots} boots")

    t0 = time.monotonic()
    e = subprocess.run([bf, "export", model, "--jit-sync", "--state", disk, "--image", image, "--bake-weights",
                        "-z", tok, "--", *gen], capture_output=True, text=True)
    if e.returncode != 0:
        sys.exit("demo: export failed: " + e.stderr.strip())
    print(f"  export: {e.stderr.strip().removeprefix('bareflow: ')} in {time.monotonic() - t0:.2f} s", flush=True)
    version = subprocess.run([os.path.join(image, "appliance"), "--version"], capture_output=True, text=True).stdout
    units = re.findall(r"^unit \S+ (\S+) ", version, re.M)
    small = os.path.getsize(os.path.join(image, "appliance")) + os.path.getsize(os.path.join(image, "bareflow-kernel.bin"))
    for form, flag in (("-kernel", []), ("GRUB ISO", ["--iso"])):
        out, err, first, status = boot([bf, "boot", *accel, *flag, "--image", image])
        row(f"appliance ({form})", small, out, err, first, status, 0, tiers_of(units))

    weights = sum(os.path.getsize(os.path.join(image, "weights", f)) for f in os.listdir(os.path.join(image, "weights")))
    acc = "TCG" if a.accel == "tcg" or used_tcg or not os.access("/dev/kvm", os.R_OK | os.W_OK) else "KVM"
    print(f"\nBareFlow demo: {os.path.basename(model)} under QEMU {acc}; sizes are kernel + executable "
          f"(weights {weights:,} bytes beside them)\n")
    head = ("boot", "image bytes", "boot to 1st token s", "engine TTFT s", "decode tok/s", "compiles", "tiers")
    table = [head] + [(r[0], f"{r[1]:,}", f"{r[2]:.3f}" if r[2] is not None else "-",
                       f"{r[3]:.4f}" if r[3] is not None else "-", f"{r[4]:.1f}" if r[4] is not None else "-",
                       str(r[5]), r[6]) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for i, t in enumerate(table):
        print("| " + " | ".join(c.ljust(widths[j]) if j in (0, 6) else c.rjust(widths[j]) for j, c in enumerate(t)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    same = all(t == texts[0] for t in texts)
    print(f"\nsame text on every boot: {'yes' if same else 'NO'}; {big / small:.0f}x smaller image")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
