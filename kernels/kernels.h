// The hot math of a llama forward pass, as a table of function pointers.
//
// reference_kernels() is the portable scalar implementation: the correctness oracle for every
// faster variant (hand-written SIMD, JIT) and the fallback on any CPU. Its float operation order
// follows llama2.c run.c, so greedy decoding reproduces run.c's text exactly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bf {

// How weights are stored. Loaders translate file formats into these.
enum class DType : uint8_t {
  F32,
  F16,
  Q8_0,  // GGML blocks of 32: fp16 scale + 32 int8
  Q4_0,  // GGML blocks of 32: fp16 scale + 16 bytes of nibbles, value = d * (nibble - 8)
  Q8_G,  // llama2.c v2 (runq.c): int8 stream + separate f32 scale per `group` elements
  // Repacked at load (repack_matrix) for the SIMD kernels, never read from a file: 8 consecutive
  // rows interleaved block by block, so one 32-byte load holds 4 weights of each of the 8 rows and
  // an int8 dot lands one row per vector lane (no cross-lane reduction), and the 8 rows' scales
  // are one 16-byte load (no gather). Same bytes as the source; rows % 8 == 0, cols % 32 == 0.
  Q8_0x8,  // BlockQ8_0x8 per 8 rows and block column
  Q4_0x8,  // BlockQ4_0x8 per 8 rows and block column
};
const char* dtype_name(DType t);

constexpr int kBlock = 32;  // elements per Q8_0 / Q4_0 block

struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[kBlock];
};
static_assert(sizeof(BlockQ8_0) == 34, "GGML block_q8_0 layout");

struct BlockQ4_0 {
  uint16_t d;               // fp16 scale
  uint8_t qs[kBlock / 2];   // element j in low nibble of qs[j], element j+16 in high nibble
};
static_assert(sizeof(BlockQ4_0) == 18, "GGML block_q4_0 layout");

// Rows 8R..8R+7, block column g, of a Q8_0 matrix. Byte 32k + 4i + b of qs is element 4k + b of row
// 8R + i, stored as w ^ 0x80 (w + 128, unsigned): vpdpbusd multiplies unsigned by signed bytes, so
// the kernels dot (w + 128) with x exactly and take off 128 * sum(x), once per block for 8 rows.
struct BlockQ8_0x8 {
  uint16_t d[8];  // fp16 scales of the 8 rows
  uint8_t qs[8 * kBlock];
};
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0), "the repacked layout takes no more memory");

// The same for Q4_0: byte 32k + 4i + b of qs is byte 4k + b of row 8R + i's BlockQ4_0::qs (low nibble
// element 4k + b, high nibble element 16 + 4k + b), unchanged (nibbles are unsigned already).
struct BlockQ4_0x8 {
  uint16_t d[8];
  uint8_t qs[8 * kBlock / 2];
};
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0), "the repacked layout takes no more memory");

// A weight matrix [rows x cols], row-major, stored as ONE flat element stream: element (r, c) is
// element r*cols + c of the stream. Quantization blocks may therefore cross row boundaries
// (GGUF ffn_down of stories260K has rows of 172).
struct Matrix {
  DType type = DType::F32;
  const void* data = nullptr;
  const float* scales = nullptr;  // Q8_G only
  int32_t group = 0;              // Q8_G only: elements per scale
  int64_t rows = 0, cols = 0;
};
// Bytes of weight data a full pass over the matrix reads.
uint64_t matrix_bytes(const Matrix& m);
// Elements per quantization group (1 for float types).
int32_t matrix_group(const Matrix& m);
// The type a matrix was read as (Q8_0 for Q8_0x8, ...): what the model file holds.
DType file_dtype(DType t);
// True when W has a repacked form (Q8_0 or Q4_0, rows % 8 == 0, cols % 32 == 0).
bool repackable(const Matrix& W);
// Writes row groups [g0, g1) (rows 8*g0 .. 8*g1) of repackable W in its repacked form into dst,
// which holds the whole repacked matrix (matrix_bytes(W) bytes); the result's type is
// repacked_dtype(W.type). Row groups are independent, so a matrix can be repacked piecewise.
void repack_matrix(void* dst, const Matrix& W, int64_t g0, int64_t g1);
DType repacked_dtype(DType t);
// True when matvec uses integer dot products on a quantized activation (every row starts on a
// group boundary). Otherwise quantized weights are dequantized and dotted with f32 activations.
bool matrix_uses_quantized_activation(const Matrix& m);

// An activation vector quantized like runq.c / llama.cpp: per group, s = max|x| / 127 and
// q = round(x / s).
// sums (optional): per group, the sum of its q, written by quantize when not null. The SIMD
// kernels of the repacked layouts need it (their weights are unsigned: w + 128, nibbles).
struct QuantizedVector {
  int8_t* q = nullptr;
  float* s = nullptr;
  int64_t n = 0;
  int32_t group = 0;
  int32_t* sums = nullptr;
};

enum class RopeStyle : uint8_t {
  Interleaved,  // rotate pairs (2i, 2i+1) within a head: llama2.c, Meta checkpoints, llama.cpp "norm"
  HalfSplit,    // rotate pairs (i, i + head_size/2): weights in Hugging Face's permuted q/k layout
};

struct Kernels {
  const char* name;
  // out[r - r0] = dot(W row r, x) for r in [r0, r1). xq must be the quantized x when
  // matrix_uses_quantized_activation(W), else may be null.
  void (*matvec)(float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                 int64_t r0, int64_t r1);
  void (*quantize)(QuantizedVector& xq, const float* x);  // xq.n % xq.group == 0
  void (*rmsnorm)(float* out, const float* x, const float* w, int n, float eps);
  void (*softmax)(float* x, int n);
  // Rotates q (n_heads heads) and k (n_kv_heads heads) in place for position pos.
  void (*rope)(float* q, float* k, int pos, int dim, int kv_dim, int head_size, float theta,
               RopeStyle style);
  // One attention head over positions 0..pos: att (scratch, pos+1 floats) = softmax(q.k / sqrt(hs)),
  // out = sum att[t] * v[t]. k and v point at position 0 of this head's cache; stride floats apart.
  void (*attention)(float* out, float* att, const float* q, const float* k, const float* v,
                    int pos, int head_size, int64_t stride);
  // hb[i] = silu(hb[i]) * hb2[i]
  void (*swiglu)(float* hb, const float* hb2, int n);
  // out[0..cols) = row `row` of W, dequantized (embedding lookup).
  void (*dequantize_row)(float* out, const Matrix& W, int64_t row);
  // Batched matvec (prefill): for t in [0, n), out[t*ldo + r - r0] = dot(W row r, x + t*ldx) for r
  // in [r0, r1), xq[t] being token t's quantized activation as for matvec. Bit-identical to n
  // matvec calls; faster because each block of weight rows is reused from cache for every token.
  void (*matmul)(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx,
                 const QuantizedVector* xq, int n, int64_t r0, int64_t r1);
};

const Kernels& reference_kernels();

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);  // round to nearest even

}  // namespace bf
