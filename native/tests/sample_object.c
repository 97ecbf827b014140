/* A small kernel-like object for the loader's tests, compiled three ways by CMake (PIC: PC32,
   PLT32, REX_GOTPCRELX; -mcmodel=large: R_X86_64_64; no PIE: 32S) so that each relocation type the
   loader handles is exercised by real compiler output, not by hand-made bytes. */
#include <math.h>
#include <string.h>

static const float kWeights[8] = {1.5f, -2.25f, 3.0f, 0.5f, -1.0f, 2.0f, 0.25f, 4.0f};
static int calls; /* .bss: the data pages stay writable */
extern int bf_sample_external; /* defined by the test: through the GOT under PIC */

float bf_sample_dot(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; i++) s += x[i] * kWeights[i & 7];
  calls++;
  return sqrtf(fabsf(s)) + expf(-s * s);
}

void bf_sample_fill(unsigned char* p, int n) { memset(p, 0x5a, (size_t)n); }

int bf_sample_calls(void) { return calls + bf_sample_external; }
