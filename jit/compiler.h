// The LLVM side of the JIT: specializes the embedded kernel bitcode to one call site's matrix
// (type, group size, rows, cols become constants; the code targets the host CPU's name and
// features) and makes it callable at one tier: the LLVM interpreter, or ORC LLJIT at O0..O3.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/sites.h"
#include "jit/options.h"
#include "native/loaded_object.h"
#include "llvm/ADT/IntrusiveRefCntPtr.h"
#include "llvm/Support/Error.h"

namespace llvm {
class TargetMachine;
namespace orc {
class LLJIT;
class JITTargetMachineBuilder;
class ResourceTracker;
}  // namespace orc
}  // namespace llvm

namespace bf::jit {

// What a variant computes: one site's matvec (W: layer 0's matrix of the site), or a fused group
// (W: its first matrix; rows2, rows3: the rows of the others, which share W's type and width).
struct Spec {
  Matrix W;
  bool fused = false;
  Fusion fusion = Fusion::Qkv;
  int64_t rows2 = 0, rows3 = 0;
};

// Names a compiled variant's code for Compiler::free (0: none).
using VariantId = uint64_t;

struct Variant {
  VariantId id = 0;
  MatvecFn fn = nullptr;    // a site's matvec
  FusedFn fused = nullptr;  // a fused group (compiled tiers only)
  Tier tier = Tier::Aot;
  uint64_t code_bytes = 0;  // bytes of machine code (text sections); 0 for the interpreter
  double compile_ms = 0;    // bitcode parse + specialization + optimization + code generation
  double parse_ms = 0, optimize_ms = 0;  // compiled tiers: the first two parts of compile_ms
  // Compiled tiers: the relocatable object the code was linked from (what the store keeps).
  std::shared_ptr<const std::string> object;
  // The kernel family compiled, as kernels/dispatch.cpp names the AOT ones: "reference" (the
  // interpreter, hosts without AVX2), "avx2", "avx512" (AVX-512 with VNNI), "avxvnni" (AVX-VNNI
  // without AVX-512).
  const char* family = "";
};

// Interpreted variants are reached through fixed trampolines, one per slot; a slot holds one
// interpreter at a time (compiling into a slot replaces what was there).
constexpr size_t kInterpSlots = 16;

struct CompileOptions {
  size_t interp_slot = 0;  // Tier::Interp: the slot (< kInterpSlots) the variant takes
  // LLVM may reorder and fuse float additions and multiplications (vectorized dot products; results
  // then differ from the reference by rounding).
  bool reassoc = false;
  // Tests only (jit/test_hooks.h): bakes a wrong column count into the variant, to prove that
  // verification rejects bad code.
  bool miscompile = false;
};

class Compiler {
 public:
  // For the host CPU (name and features from LLVM's host detection), or for `cpu` with `features`
  // ("+avx2,+fma,..."): tests generate code for CPUs this machine lacks (never running it).
  // Fails when LLVM cannot target it.
  static llvm::Expected<std::unique_ptr<Compiler>> create(const std::string& cpu = "",
                                                          const std::string& features = "");
  ~Compiler();

  // `name` must be unique per compiled (non-interpreter) variant. Each compiled variant has its own
  // ORC ResourceTracker, so that free() can give its code back.
  llvm::Expected<Variant> compile(const Spec& spec, Tier tier, const std::string& name,
                                  const CompileOptions& o = {});
  // Links an object that compile() produced in an earlier process for the same key (the caller
  // checked it: key_of() equal); `name` is the symbol it defines. Compiled tiers only. Uses the
  // engine's loader (native/), not ORC: nothing of LLVM's JIT is created for it.
  llvm::Expected<Variant> load(const Spec& spec, Tier tier, const std::string& name, const std::vector<uint8_t>& object);
  // Everything that decides what compile(spec, tier, reassoc) produces: the kernel bitcode, the
  // specialization constants, the CPU name and features, LLVM's version, the codegen options and
  // this executable's build id. Equal keys may share code; the store keeps objects under it.
  std::string key_of(const Spec& spec, Tier tier, bool reassoc) const;
  // Frees a variant's code (an interpreted one: its slot, unless a newer variant took it). The
  // caller guarantees that no thread is inside it or will call it again.
  llvm::Error free(VariantId id);

  const std::string& cpu() const { return cpu_; }
  const std::string& features() const { return features_; }
  uint64_t code_bytes() const { return code_bytes_; }  // all compiled variants so far

 private:
  Compiler() = default;
  llvm::Expected<llvm::orc::LLJIT&> jit_for(Tier tier);
  // Looks `name` up (compiling or linking what rt holds), keeps rt as v's tracker, fills v's entry
  // point, code size and object.
  llvm::Error link(llvm::orc::LLJIT& j, llvm::IntrusiveRefCntPtr<llvm::orc::ResourceTracker> rt,
                   const std::string& name, bool fused, Variant& v);

  std::mutex mu_;  // LLVM state below; compiles are serialized
  std::string cpu_, features_;
  std::unique_ptr<llvm::orc::JITTargetMachineBuilder> jtmb_;  // the target, for each level's LLJIT
  std::unique_ptr<llvm::TargetMachine> tm_;                    // the optimizer's view of it
  std::array<std::unique_ptr<llvm::orc::LLJIT>, 4> jits_;  // one per codegen level O0..O3
  uint64_t last_object_text_ = 0;
  std::shared_ptr<const std::string> last_object_;
  uint64_t dumped_ = 0;  // objects written to $BAREFLOW_JIT_DUMP
  uint64_t code_bytes_ = 0;
  VariantId last_id_ = 0;
  // The live variants: each interpreter slot's (emptied on destruction, before LLVM's own statics
  // go), and each compiled variant's tracker (emptied before jits_ go: a tracker's destructor
  // reaches its ExecutionSession).
  std::array<VariantId, kInterpSlots> slot_owner_{};
  std::map<VariantId, llvm::IntrusiveRefCntPtr<llvm::orc::ResourceTracker>> trackers_;
  std::map<VariantId, native::LoadedObject> loaded_;  // load()'s variants
};

// The symbol a variant's code defines, named by its cache key so that a stored object is found
// again: "bf_<unit>_<tier>_<hash of key>".
std::string variant_symbol(const std::string& unit, Tier tier, const std::string& key);

// The embedded kernel bitcode (bytes).
size_t kernel_bitcode_size();

}  // namespace bf::jit
