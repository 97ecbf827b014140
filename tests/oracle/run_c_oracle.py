#!/usr/bin/python3
"""run_c_oracle.py -- an independent pure-Python (numpy) transcription of the
algorithm of Karpathy's llama2.c ``run.c`` (fp32 inference of llama2.c "v0"
checkpoints), used as a test oracle for BareFlow.

Usage (mirrors run.c):

    run_c_oracle.py MODEL.bin -z TOKENIZER.bin [-t TEMP] [-p TOPP] [-s SEED]
                    [-n STEPS] [-i PROMPT] [-m generate] [--safe-printf] [--tokens]

Every floating point quantity that can influence a decision (argmax, sampling,
the merge order of the tokenizer) is computed in float32 in the same order as
run.c compiled with ``gcc -O3`` (no -ffast-math, no FMA contraction): every
reduction (matmul rows, dot products, rmsnorm sum of squares, softmax sums,
attention-weighted sums, sampling CDFs) is a *sequential* float32 accumulation
(numpy ``add.accumulate``, which is strictly left-to-right, never numpy's
pairwise ``sum``).  libm calls (expf, cosf, sinf, powf) are evaluated in double
and rounded once to float32, i.e. correctly rounded, which is what glibc's
float functions return in all but extremely rare cases.

See README.md next to this file.
"""

import os
import re
import struct
import sys

import numpy as np

F32 = np.float32
MASK64 = (1 << 64) - 1


def die(msg, code=1):
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.exit(code)


# ----------------------------------------------------------------------------
# float32 helpers emulating C float arithmetic

def seqsum(a, axis=-1):
    """Sequential (C loop order) float32 sum along `axis`: ((a0+a1)+a2)+..."""
    a = np.asarray(a, dtype=F32)
    return np.add.accumulate(a, axis=axis, dtype=F32).take(-1, axis=axis)


def expf(x):
    """expf(x), correctly rounded to float32 (computed in double)."""
    return np.exp(np.asarray(x, dtype=F32).astype(np.float64)).astype(F32)


def matmul(WT, x):
    """run.c matmul: xout[i] = sum_j W[i][j] * x[j], j ascending, float32.

    WT is W transposed (shape n x d), so that the product matrix P[j, i] =
    W[i][j] * x[j] is accumulated along axis 0 in order j = 0..n-1.
    """
    P = WT * x[:, None]  # each product rounded to float32, as in C
    return np.add.accumulate(P, axis=0, dtype=F32)[-1]


def rmsnorm(x, weight):
    # ss = sum x[j]*x[j]; ss /= size; ss += 1e-5f; ss = 1.0f / sqrtf(ss)
    ss = seqsum(x * x)
    ss = F32(ss / F32(x.shape[0]))
    ss = F32(ss + F32(1e-5))
    ss = F32(F32(1.0) / np.sqrt(ss, dtype=F32))
    # o[j] = weight[j] * (ss * x[j])
    return (weight * (ss * x)).astype(F32)


def softmax_rows(x):
    """run.c softmax applied independently to each row of a 2-D float32 array
    (or to a 1-D array).  max, expf(x - max), sequential sum, x /= sum."""
    x = np.asarray(x, dtype=F32)
    mx = x.max(axis=-1, keepdims=True)
    e = expf(x - mx)
    s = np.add.accumulate(e, axis=-1, dtype=F32)[..., -1:]
    return (e / s).astype(F32)


# ----------------------------------------------------------------------------
# checkpoint

class Config:
    pass


class Transformer:
    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 28:
            die("Couldn't read checkpoint %s" % path)
        c = Config()
        (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
         vocab_size, c.seq_len) = struct.unpack("<7i", data[:28])
        shared = vocab_size > 0
        c.vocab_size = abs(vocab_size)
        c.shared_weights = shared
        self.config = c

        dim, hidden, L = c.dim, c.hidden_dim, c.n_layers
        hs = dim // c.n_heads
        kv_dim = (dim * c.n_kv_heads) // c.n_heads
        self.head_size = hs
        self.kv_dim = kv_dim
        self.kv_mul = c.n_heads // c.n_kv_heads

        flt = np.frombuffer(data, dtype="<f4", offset=28).astype(F32)
        off = [0]

        def take(count, shape):
            a = flt[off[0]:off[0] + count]
            if a.size != count:
                die("checkpoint %s is truncated" % path)
            off[0] += count
            return a.reshape(shape)

        self.tok_emb = take(c.vocab_size * dim, (c.vocab_size, dim))
        self.rms_att = take(L * dim, (L, dim))
        wq = take(L * dim * (c.n_heads * hs), (L, c.n_heads * hs, dim))
        wk = take(L * dim * (c.n_kv_heads * hs), (L, c.n_kv_heads * hs, dim))
        wv = take(L * dim * (c.n_kv_heads * hs), (L, c.n_kv_heads * hs, dim))
        wo = take(L * (c.n_heads * hs) * dim, (L, dim, c.n_heads * hs))
        self.rms_ffn = take(L * dim, (L, dim))
        w1 = take(L * dim * hidden, (L, hidden, dim))
        w2 = take(L * hidden * dim, (L, dim, hidden))
        w3 = take(L * dim * hidden, (L, hidden, dim))
        self.rms_final = take(dim, (dim,))
        off[0] += c.seq_len * hs // 2  # freq_cis_real (unused)
        off[0] += c.seq_len * hs // 2  # freq_cis_imag (unused)
        if shared:
            wcls = self.tok_emb
        else:
            wcls = take(c.vocab_size * dim, (c.vocab_size, dim))

        # transposed copies (n x d) for the sequential-order matmul
        T = lambda w: np.ascontiguousarray(np.swapaxes(w, -1, -2))
        self.wqT, self.wkT, self.wvT, self.woT = T(wq), T(wk), T(wv), T(wo)
        self.w1T, self.w2T, self.w3T = T(w1), T(w2), T(w3)
        self.wclsT = T(wcls)

        self.key_cache = np.zeros((L, c.seq_len, kv_dim), dtype=F32)
        self.value_cache = np.zeros((L, c.seq_len, kv_dim), dtype=F32)

        # RoPE frequencies, per even index i of the q vector (as in run.c)
        idx = np.arange(0, dim, 2)
        head_dim = (idx % hs).astype(F32)
        expo = (head_dim / F32(hs)).astype(F32)           # head_dim / (float)head_size
        powf = np.power(10000.0, expo.astype(np.float64)).astype(F32)  # powf
        self.rope_freq = (F32(1.0) / powf).astype(F32)    # 1.0f / powf(...)
        self.rope_idx = idx
        self.rope_k_mask = idx < kv_dim                  # rotn == 2 only when i < kv_dim

    def forward(self, token, pos):
        c = self.config
        dim, hs, kv_dim = c.dim, self.head_size, self.kv_dim
        nh, kv_mul = c.n_heads, self.kv_mul
        x = self.tok_emb[token].copy()

        # RoPE cos/sin for this position: val = pos * freq (float), cosf, sinf
        val = (F32(pos) * self.rope_freq).astype(F32)
        fcr = np.cos(val.astype(np.float64)).astype(F32)
        fci = np.sin(val.astype(np.float64)).astype(F32)
        i0 = self.rope_idx
        km = self.rope_k_mask
        inv_sqrt_hs = np.sqrt(F32(hs), dtype=F32)
        kv_head_of = np.arange(nh) // kv_mul

        for l in range(c.n_layers):
            xb = rmsnorm(x, self.rms_att[l])
            q = matmul(self.wqT[l], xb)
            k = matmul(self.wkT[l], xb)
            v = matmul(self.wvT[l], xb)

            # RoPE: rotate pairs (i, i+1) of q, and of k when i < kv_dim
            q0, q1 = q[i0].copy(), q[i0 + 1].copy()
            q[i0] = q0 * fcr - q1 * fci
            q[i0 + 1] = q0 * fci + q1 * fcr
            ki = i0[km]
            kr, ki_ = fcr[km], fci[km]
            k0, k1 = k[ki].copy(), k[ki + 1].copy()
            k[ki] = k0 * kr - k1 * ki_
            k[ki + 1] = k0 * ki_ + k1 * kr

            self.key_cache[l, pos] = k
            self.value_cache[l, pos] = v

            # multihead attention (GQA): head h uses kv head h // kv_mul
            K = self.key_cache[l, :pos + 1].reshape(pos + 1, c.n_kv_heads, hs)
            V = self.value_cache[l, :pos + 1].reshape(pos + 1, c.n_kv_heads, hs)
            Kh = K[:, kv_head_of, :].transpose(1, 0, 2)   # (nh, T, hs)
            Vh = V[:, kv_head_of, :].transpose(1, 0, 2)   # (nh, T, hs)
            qh = q.reshape(nh, 1, hs)
            scores = seqsum(qh * Kh, axis=2)                # (nh, T)
            scores = (scores / inv_sqrt_hs).astype(F32)
            att = softmax_rows(scores)                      # (nh, T)
            # xb[i] += att[t] * v[t][i], t ascending, starting from 0
            xbh = seqsum(att[:, :, None] * Vh, axis=1)      # (nh, hs)
            xb = xbh.reshape(dim).astype(F32)

            xb2 = matmul(self.woT[l], xb)
            x = (x + xb2).astype(F32)

            xb = rmsnorm(x, self.rms_ffn[l])
            hb = matmul(self.w1T[l], xb)
            hb2 = matmul(self.w3T[l], xb)
            # SwiGLU: val *= 1.0f / (1.0f + expf(-val)); val *= hb2[i]
            sig = (F32(1.0) / (F32(1.0) + expf(-hb))).astype(F32)
            hb = ((hb * sig).astype(F32) * hb2).astype(F32)
            xb = matmul(self.w2T[l], hb)
            x = (x + xb).astype(F32)

        x = rmsnorm(x, self.rms_final)
        return matmul(self.wclsT, x)


# ----------------------------------------------------------------------------
# tokenizer

def cstr(b):
    """C-string view of a byte string (truncated at the first NUL)."""
    n = b.find(b"\0")
    return b if n < 0 else b[:n]


class Tokenizer:
    def __init__(self, path, vocab_size):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            die("couldn't load %s" % path)
        self.vocab_size = vocab_size
        (self.max_token_length,) = struct.unpack_from("<i", data, 0)
        off = 4
        self.vocab = []
        self.scores = []
        for _ in range(vocab_size):
            if off + 8 > len(data):
                die("failed read")
            score, ln = struct.unpack_from("<fi", data, off)
            off += 8
            s = data[off:off + ln]
            off += ln
            self.scores.append(F32(score))
            self.vocab.append(s)
        self.cvocab = [cstr(s) for s in self.vocab]
        # sorted_vocab: qsort by strcmp (glibc qsort = stable merge sort;
        # Python's sort is stable and bytes order == strcmp order for C strings)
        order = sorted(range(vocab_size), key=lambda i: self.cvocab[i])
        self.sorted_strs = [self.cvocab[i] for i in order]
        self.sorted_ids = order
        self._cache = {}

    def str_lookup(self, s):
        """glibc bsearch over the sorted vocab; returns id or -1."""
        r = self._cache.get(s)
        if r is not None:
            return r
        lo, hi = 0, len(self.sorted_strs)
        r = -1
        while lo < hi:
            mid = (lo + hi) // 2
            p = self.sorted_strs[mid]
            if s < p:
                hi = mid
            elif s > p:
                lo = mid + 1
            else:
                r = self.sorted_ids[mid]
                break
        self._cache[s] = r
        return r

    def encode(self, text, bos=True, eos=False):
        text = cstr(text)
        tokens = []
        if bos:
            tokens.append(1)
        if len(text) != 0:
            dummy = self.str_lookup(b" ")
            if dummy == -1:
                die("oracle: tokenizer has no ' ' token (run.c would push id -1: undefined behaviour)")
            tokens.append(dummy)
        # UTF-8 codepoints, byte fallback (+3)
        buf = bytearray()
        n = len(text)
        for ci in range(n):
            ch = text[ci]
            if (ch & 0xC0) != 0x80:
                buf = bytearray()
            buf.append(ch)
            nxt = text[ci + 1] if ci + 1 < n else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            tid = self.str_lookup(bytes(buf))
            if tid != -1:
                tokens.append(tid)
            else:
                for b in buf:
                    tokens.append(b + 3)
            buf = bytearray()
        # greedy merges by best score (strict '>': first best in index order)
        while True:
            best_score = F32(-1e10)
            best_id = -1
            best_idx = -1
            for i in range(len(tokens) - 1):
                s = self.cvocab[tokens[i]] + self.cvocab[tokens[i + 1]]
                tid = self.str_lookup(s)
                if tid != -1 and self.scores[tid] > best_score:
                    best_score = self.scores[tid]
                    best_id = tid
                    best_idx = i
            if best_idx == -1:
                break
            tokens[best_idx] = best_id
            del tokens[best_idx + 1]
        if eos:
            tokens.append(2)
        return tokens

    _byte_re = re.compile(rb"<0x[ \t\n\v\f\r]*([0-9A-Fa-f]{1,2})")

    def decode(self, prev_token, token):
        piece = self.cvocab[token]
        if prev_token == 1 and piece[:1] == b" ":
            piece = piece[1:]
        # sscanf(piece, "<0x%02hhX>", &byte_val) == 1  -> raw byte
        m = self._byte_re.match(piece)
        if m:
            piece = bytes([int(m.group(1), 16)])
        return piece


def safe_printf_bytes(piece):
    """run.c safe_printf: returns the bytes printf("%s", piece) would write,
    or b"" when the piece is skipped."""
    if len(piece) == 0 or piece[0] == 0:
        return b""
    if len(piece) == 1:
        b = piece[0]
        # C-locale isprint (0x20..0x7e) || isspace (\t \n \v \f \r and ' ')
        if not ((0x20 <= b <= 0x7E) or b in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)):
            return b""
    return cstr(piece)


# ----------------------------------------------------------------------------
# sampler

class Sampler:
    def __init__(self, vocab_size, temperature, topp, seed):
        self.vocab_size = vocab_size
        self.temperature = F32(temperature)
        self.topp = F32(topp)
        self.state = seed & MASK64

    def random_u32(self):
        s = self.state
        s ^= s >> 12
        s ^= (s << 25) & MASK64
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & MASK64) >> 32

    def random_f32(self):
        return F32(F32(self.random_u32() >> 8) / F32(16777216.0))

    @staticmethod
    def sample_argmax(p):
        return int(np.argmax(p))  # first maximum, like run.c's strict '>'

    @staticmethod
    def sample_mult(p, coin):
        cdf = np.add.accumulate(p, dtype=F32)
        hit = np.nonzero(coin < cdf)[0]
        return int(hit[0]) if hit.size else p.shape[0] - 1

    def sample_topp(self, p, coin):
        n = p.shape[0]
        topp = self.topp
        cutoff = F32(F32(F32(1.0) - topp) / F32(n - 1))
        idx = np.nonzero(p >= cutoff)[0]
        probs = p[idx]
        # qsort descending by prob; glibc's merge sort is stable
        order = np.argsort(-probs, kind="stable")
        idx, probs = idx[order], probs[order]
        n0 = idx.shape[0]
        cum = np.add.accumulate(probs, dtype=F32)
        last_idx = n0 - 1
        over = np.nonzero(cum > topp)[0]
        if over.size:
            last_idx = int(over[0])
        cumulative_prob = cum[last_idx] if n0 > 0 else F32(0.0)
        r = F32(coin * cumulative_prob)
        # cdf over probindex[0..last_idx] equals cum[0..last_idx] (same order)
        hit = np.nonzero(r < cum[:last_idx + 1])[0]
        if hit.size:
            return int(idx[hit[0]])
        return int(idx[last_idx])

    def sample(self, logits):
        if self.temperature == F32(0.0):
            return self.sample_argmax(logits)
        logits = (logits / self.temperature).astype(F32)
        probs = softmax_rows(logits)
        coin = self.random_f32()
        if self.topp <= 0 or self.topp >= 1:
            return self.sample_mult(probs, coin)
        return self.sample_topp(probs, coin)


# ----------------------------------------------------------------------------
# generate

def generate(transformer, tokenizer, sampler, prompt, steps, out, mode_safe, mode_tokens):
    if prompt is None:
        prompt = b""
    prompt_tokens = tokenizer.encode(prompt, True, False)
    num_prompt_tokens = len(prompt_tokens)
    if num_prompt_tokens < 1:
        die("something is wrong, expected at least 1 prompt token")
    token = prompt_tokens[0]
    pos = 0
    while pos < steps:
        logits = transformer.forward(token, pos)
        if pos < num_prompt_tokens - 1:
            nxt = prompt_tokens[pos + 1]
        else:
            nxt = sampler.sample(logits)
        pos += 1
        if nxt == 1:
            break
        if mode_tokens:
            out.write(b"%d\n" % nxt)
        else:
            piece = tokenizer.decode(token, nxt)
            out.write(safe_printf_bytes(piece) if mode_safe else piece)
        out.flush()
        token = nxt
    if not mode_tokens:
        out.write(b"\n")
    out.flush()


# ----------------------------------------------------------------------------
# C-like argument parsing

def c_atoi(s):
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", s)
    return int(m.group(1)) if m else 0


def c_atof(s):
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
                 rb"|inf(?:inity)?|nan))", s, re.IGNORECASE)
    return float(m.group(1)) if m else 0.0


USAGE = """Usage:   run_c_oracle.py <checkpoint> [options] [--safe-printf] [--tokens]
Example: run_c_oracle.py model.bin -z tokenizer.bin -n 256 -i "Once upon a time" -s 42
Options:
  -t <float>  temperature in [0,inf], default 1.0
  -p <float>  p value in top-p (nucleus) sampling in [0,1] default 0.9
  -s <int>    random seed (REQUIRED and non-zero when -t != 0: run.c would use time(NULL))
  -n <int>    number of steps to run for, default 256. 0 = max_seq_len
  -i <string> input prompt
  -z <string> optional path to custom tokenizer (default tokenizer.bin)
  -m <string> mode: generate only (chat is not supported by the oracle)
  --safe-printf  filter pieces through run.c's safe_printf (exact run.c stdout)
  --tokens       print generated token ids (one per line) instead of text
"""


def error_usage():
    sys.stderr.write(USAGE)
    sys.exit(1)


def main(argv):
    argv = [os.fsencode(a) for a in argv]
    if len(argv) < 2:
        error_usage()
    checkpoint = argv[1]
    tokenizer_path = b"tokenizer.bin"
    temperature = F32(1.0)
    topp = F32(0.9)
    steps = 256
    prompt = None
    seed = None
    mode = b"generate"
    safe = False
    tokens = False
    i = 2
    while i < len(argv):
        a = argv[i]
        if a == b"--safe-printf":
            safe = True
            i += 1
            continue
        if a == b"--tokens":
            tokens = True
            i += 1
            continue
        if i + 1 >= len(argv):
            error_usage()
        if a[:1] != b"-" or len(a) != 2:
            error_usage()
        v = argv[i + 1]
        o = a[1:2]
        if o == b"t":
            temperature = F32(c_atof(v))
        elif o == b"p":
            topp = F32(c_atof(v))
        elif o == b"s":
            seed = c_atoi(v)
        elif o == b"n":
            steps = c_atoi(v)
        elif o == b"i":
            prompt = v
        elif o == b"z":
            tokenizer_path = v
        elif o == b"m":
            mode = v
        elif o == b"y":
            pass  # system prompt: chat mode only
        else:
            error_usage()
        i += 2

    if temperature < 0.0:
        temperature = F32(0.0)
    # run.c seeds from time(NULL) when the seed is 0 / omitted.  The oracle
    # requires an explicit non-zero seed, except at temperature 0 where the
    # RNG is never drawn from (greedy argmax), so the seed cannot matter.
    if seed is None:
        if temperature != F32(0.0):
            die("run_c_oracle: -s SEED is required when temperature != 0 "
                "(run.c would seed from time(NULL))")
        seed = 1
    # int -> unsigned long long (sign extension), as in run.c
    seed = (((seed + (1 << 31)) % (1 << 32)) - (1 << 31)) & MASK64
    if seed == 0:
        if temperature != F32(0.0):
            die("run_c_oracle: -s 0 makes run.c seed from time(NULL); give a non-zero seed")
        seed = 1
    if topp < 0.0 or 1.0 < topp:
        topp = F32(0.9)
    if steps < 0:
        steps = 0
    if mode != b"generate":
        die("run_c_oracle: only -m generate is supported")

    transformer = Transformer(checkpoint)
    seq_len = transformer.config.seq_len
    if steps == 0 or steps > seq_len:
        steps = seq_len
    tokenizer = Tokenizer(tokenizer_path, transformer.config.vocab_size)
    sampler = Sampler(transformer.config.vocab_size, temperature, topp, seed)
    generate(transformer, tokenizer, sampler, prompt, steps, sys.stdout.buffer, safe, tokens)
    return 0


if __name__ == "__main__":
    import signal
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # behave like C on a closed pipe
    sys.exit(main(sys.argv))
