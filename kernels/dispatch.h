// Run-time choice of the kernel table by instruction set (CPUID + XCR0).
//
// Every SIMD kernel reproduces the scalar reference bit for bit: matvec keeps each row's
// summation order by putting rows (not columns) in vector lanes, and quantized dot products are
// exact integers scaled in the reference's float order. So outputs do not depend on the ISA.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace bf {

enum class Isa : uint8_t {
  Scalar,  // the reference
  Avx2,    // AVX2 + FMA + F16C
  Avx512,  // AVX-512 F/BW/VL/DQ + VNNI (int8 dot products with vpdpbusd)
  AvxVnni,  // AVX2 + FMA + F16C + AVX-VNNI (vpdpbusd, VEX form): after Avx512 where both exist
};
const char* isa_name(Isa isa);
// True when the CPU and the OS (XCR0 register state) support `isa`.
bool isa_supported(Isa isa);
// The best supported ISA.
Isa best_isa();
// The kernel table for a supported ISA.
const Kernels& kernels_for(Isa isa);

// Sum of n floats read with the ISA's widest loads: the bandwidth probe's inner loop.
float stream_sum(Isa isa, const float* p, size_t n);

}  // namespace bf
