// The scalar reference kernels of the AOT build (their source is shared with the JIT's bitcode).
#include "kernels/reference_impl.h"
