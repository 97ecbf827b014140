#include "jit/compiler.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>
#include <utility>

#include "engine/build_id.h"
#include "engine/error.h"
#include "engine/fnv1a.h"
#include "native/loaded_object.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/ExecutionEngine/ExecutionEngine.h"
#include "llvm/ExecutionEngine/GenericValue.h"
#include "llvm/ExecutionEngine/Interpreter.h"  // links the interpreter in
#include "llvm/ExecutionEngine/Orc/Core.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/ExecutionEngine/Orc/ObjectTransformLayer.h"
#include "llvm/ExecutionEngine/Orc/ThreadSafeModule.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/InstIterator.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Object/ObjectFile.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Transforms/IPO/GlobalDCE.h"
#include "llvm/Transforms/Utils/Mem2Reg.h"

// jit/bitcode_blob.cpp
extern "C" const char bf_kernels_bc_start[], bf_kernels_bc_end[];

namespace bf::jit {

using namespace llvm;

size_t kernel_bitcode_size() { return size_t(bf_kernels_bc_end - bf_kernels_bc_start); }

namespace {

llvm::Error err(const std::string& msg) { return make_error<StringError>(msg, inconvertibleErrorCode()); }

struct InterpSlot {
  std::mutex mu;  // the interpreter is not reentrant; row ranges may arrive from several threads
  std::unique_ptr<LLVMContext> ctx;
  std::unique_ptr<ExecutionEngine> ee;  // owns the module; declared after ctx, destroyed before it
  Function* fn = nullptr;
};
InterpSlot g_slots[kInterpSlots];

// The interpreter only calls functions through runFunction() with GenericValue arguments.
template <size_t I>
void interp_trampoline(float* out, const Matrix& W, const float* x, const QuantizedVector* xq, int64_t r0,
                       int64_t r1) {
  InterpSlot& s = g_slots[I];
  std::lock_guard<std::mutex> lock(s.mu);
  GenericValue args[6];
  args[0] = PTOGV(out);
  args[1] = PTOGV(const_cast<Matrix*>(&W));
  args[2] = PTOGV(const_cast<float*>(x));
  args[3] = PTOGV(const_cast<QuantizedVector*>(xq));
  args[4].IntVal = APInt(64, uint64_t(r0));
  args[5].IntVal = APInt(64, uint64_t(r1));
  s.ee->runFunction(s.fn, args);
}

template <size_t... I>
constexpr std::array<MatvecFn, kInterpSlots> make_trampolines(std::index_sequence<I...>) {
  return {interp_trampoline<I>...};
}
constexpr std::array<MatvecFn, kInterpSlots> kTrampolines = make_trampolines(std::make_index_sequence<kInterpSlots>{});

CodeGenOptLevel codegen_level(Tier t) {
  switch (t) {
    case Tier::O0: return CodeGenOptLevel::None;
    case Tier::O1: return CodeGenOptLevel::Less;
    case Tier::O2: return CodeGenOptLevel::Default;
    default: return CodeGenOptLevel::Aggressive;
  }
}

OptimizationLevel opt_level(Tier t) {
  switch (t) {
    case Tier::O1: return OptimizationLevel::O1;
    case Tier::O2: return OptimizationLevel::O2;
    case Tier::O3: return OptimizationLevel::O3;
    default: return OptimizationLevel::O0;
  }
}

// Parses the embedded bitcode and bakes W's type and shape into it; the entry becomes `name` and
// everything else internal, so that unused reference kernels are dropped and the rest inlined.
// With F16C, half -> float is one instruction (vcvtph2ps) instead of the reference's bit
// manipulation; the value is the same for every input but signaling NaNs (made quiet), which
// verification over the whole matrix would catch.
void use_hardware_fp16(Module& M) {
  Function* f = M.getFunction("_ZN2bf11fp16_to_f32Et");
  if (!f || f->isDeclaration()) return;
  f->deleteBody();
  IRBuilder<> b(BasicBlock::Create(M.getContext(), "", f));
  b.CreateRet(b.CreateFPExt(b.CreateBitCast(f->getArg(0), b.getHalfTy()), b.getFloatTy()));
}

void allow_reassociation(Module& M) {
  for (Function& F : M)
    for (Instruction& I : instructions(F))
      if (isa<FPMathOperator>(I) && (I.getOpcode() == Instruction::FAdd || I.getOpcode() == Instruction::FMul)) {
        I.setHasAllowReassoc(true);
        I.setHasAllowContract(true);
      }
}

// Whether `features` holds every "+feature" of a comma-separated list.
bool has_all(const std::string& features, std::string_view list) {
  for (size_t i = 0; i < list.size();) {
    const size_t end = std::min(list.find(',', i), list.size());
    const std::string_view f = list.substr(i, end - i);
    if (!f.empty() && f[0] == '+' && (features + ",").find(std::string(f) + ",") == std::string::npos) return false;
    i = end + 1;
  }
  return true;
}

// The kernels this host runs, as the AOT build dispatches them (kernels/dispatch.cpp); the
// interpreter runs scalar IR only.
const char* kernel_family(const std::string& features, bool interp) {
  if (interp || !has_all(features, "+avx2,+fma,+f16c")) return "reference";
  if (has_all(features, "+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512vnni")) return "avx512";
  return has_all(features, "+avxvnni") ? "avxvnni" : "avx2";
}

Expected<std::unique_ptr<Module>> specialize(LLVMContext& ctx, const Spec& spec, const std::string& name,
                                             bool reassoc, bool miscompile, bool interp, const std::string& cpu,
                                             const std::string& features, const char** family_out) {
  const Matrix& W = spec.W;
  std::unique_ptr<MemoryBuffer> buf = MemoryBuffer::getMemBuffer(
      StringRef(bf_kernels_bc_start, kernel_bitcode_size()), "kernels.bc", /*RequiresNullTerminator=*/false);
  Expected<std::unique_ptr<Module>> m = parseBitcodeFile(buf->getMemBufferRef(), ctx);
  if (!m) return m.takeError();
  Module& M = **m;
  const auto host_has = [&](std::string_view list) { return has_all(features, list); };
  const std::string family = kernel_family(features, interp);
  if (family_out) *family_out = kernel_family(features, interp);
  const std::string kind = !spec.fused ? "matvec" : spec.fusion == Fusion::Qkv ? "qkv" : "w13";
  const std::string wanted = "bf_jit_" + kind + "_" + family;
  const std::pair<const char*, uint64_t> constants[] = {
      {"bf_spec_type", uint64_t(W.type)},
      {"bf_spec_group", uint64_t(W.group)},
      {"bf_spec_rows", uint64_t(W.rows)},
      {"bf_spec_cols", uint64_t(miscompile ? W.cols - 1 : W.cols)},
      {"bf_spec_rows2", uint64_t(spec.rows2)},
      {"bf_spec_rows3", uint64_t(spec.rows3)},
  };
  for (const auto& [gname, value] : constants) {
    GlobalVariable* g = M.getGlobalVariable(gname);
    if (!g) return err(std::string("kernel bitcode has no ") + gname);
    g->setInitializer(ConstantInt::get(g->getValueType(), value));
    g->setLinkage(GlobalValue::InternalLinkage);
    g->setConstant(true);
  }
  if (!interp && features.find("+f16c") != std::string::npos) use_hardware_fp16(M);
  if (reassoc) allow_reassociation(M);
  Function* entry = nullptr;
  for (const char* k : {"matvec", "qkv", "w13"})
    for (const char* f : {"reference", "avx2", "avx512", "avxvnni"}) {
      const std::string e = std::string("bf_jit_") + k + "_" + f;
      Function* fn = M.getFunction(e);
      if (!fn) return err("kernel bitcode has no " + e);
      if (e == wanted) {
        entry = fn;
      } else {
        fn->eraseFromParent();  // with its kernels (GlobalDCE), before anything inlines them
      }
    }
  entry->setName(name);
  for (Function& F : M) {
    if (F.isDeclaration()) continue;
    if (&F != entry) {
      F.setLinkage(GlobalValue::InternalLinkage);
      F.setComdat(nullptr);
      // Everything inlined into the entry, so that the constants reach every loop.
      F.removeFnAttr(Attribute::NoInline);
      F.addFnAttr(Attribute::AlwaysInline);
    }
    // Replaces clang's generic x86-64 target: the code is for this CPU. Functions the source
    // marked for features this host lacks keep them (GlobalDCE drops them: nothing calls them).
    F.addFnAttr("target-cpu", cpu);
    F.addFnAttr("tune-cpu", cpu);
    if (!host_has(F.getFnAttribute("target-features").getValueAsString())) continue;
    F.addFnAttr("target-features", features);
  }
  for (GlobalVariable& G : M.globals()) {
    if (G.isDeclaration() || G.hasLocalLinkage()) continue;
    G.setLinkage(GlobalValue::InternalLinkage);
    G.setComdat(nullptr);
  }
  return std::move(*m);
}

void optimize(Module& M, TargetMachine* tm, Tier tier) {
  LoopAnalysisManager lam;
  FunctionAnalysisManager fam;
  CGSCCAnalysisManager cgam;
  ModuleAnalysisManager mam;
  const OptimizationLevel level = opt_level(tier);
  PipelineTuningOptions pto;
  pto.LoopVectorization = pto.SLPVectorization = level.getSpeedupLevel() >= 2;
  PassBuilder pb(tm, pto);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  ModulePassManager mpm;
  mpm.addPass(GlobalDCEPass());
  if (tier == Tier::Interp)  // registers instead of stack slots: fewer interpreted instructions
    mpm.addPass(createModuleToFunctionPassAdaptor(PromotePass()));
  else if (tier == Tier::O0)
    mpm.addPass(pb.buildO0DefaultPipeline(level));
  else
    mpm.addPass(pb.buildPerModuleDefaultPipeline(level));
  mpm.run(M, mam);
}

}  // namespace

Expected<std::unique_ptr<Compiler>> Compiler::create(const std::string& cpu, const std::string& features) {
  static const bool initialized = [] {
    InitializeNativeTarget();
    InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)initialized;
  std::unique_ptr<Compiler> c(new Compiler());
  if (cpu.empty()) {
    Expected<orc::JITTargetMachineBuilder> host = orc::JITTargetMachineBuilder::detectHost();
    if (!host) return host.takeError();
    c->jtmb_ = std::make_unique<orc::JITTargetMachineBuilder>(std::move(*host));
  } else {
    c->jtmb_ = std::make_unique<orc::JITTargetMachineBuilder>(Triple(sys::getProcessTriple()));
    c->jtmb_->setCPU(cpu);
    SubtargetFeatures f(features);
    c->jtmb_->addFeatures(f.getFeatures());
  }
  c->cpu_ = c->jtmb_->getCPU();
  c->features_ = c->jtmb_->getFeatures().getString();
  // The target machine itself (~0.7 ms) waits for the first compile: a warm start links stored
  // objects with the engine's loader and needs only the key's CPU name and features.
  std::string why;
  if (!TargetRegistry::lookupTarget(c->jtmb_->getTargetTriple().str(), why))
    return make_error<StringError>("LLVM cannot target " + c->jtmb_->getTargetTriple().str() + ": " + why,
                                   inconvertibleErrorCode());
  return c;
}

namespace {
void clear_slot(size_t i) {
  InterpSlot& s = g_slots[i];
  std::lock_guard<std::mutex> lock(s.mu);
  s.fn = nullptr;
  s.ee.reset();
  s.ctx.reset();
}
}  // namespace

Compiler::~Compiler() {
  for (size_t i = 0; i < kInterpSlots; i++)
    if (slot_owner_[i]) clear_slot(i);
  trackers_.clear();
}

llvm::Error Compiler::free(VariantId id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (loaded_.erase(id)) return llvm::Error::success();
  if (const auto it = trackers_.find(id); it != trackers_.end()) {
    const IntrusiveRefCntPtr<orc::ResourceTracker> rt = std::move(it->second);
    trackers_.erase(it);
    return rt->remove();
  }
  for (size_t i = 0; i < kInterpSlots; i++)
    if (slot_owner_[i] == id) {
      clear_slot(i);
      slot_owner_[i] = 0;
      return llvm::Error::success();
    }
  // An interpreted variant whose slot a newer one took is already gone.
  return llvm::Error::success();
}

Expected<orc::LLJIT&> Compiler::jit_for(Tier tier) {
  std::unique_ptr<orc::LLJIT>& slot = jits_[size_t(tier) - size_t(Tier::O0)];
  if (slot) return *slot;
  orc::JITTargetMachineBuilder jtmb = *jtmb_;
  jtmb.setCodeGenOptLevel(codegen_level(tier));
  Expected<std::unique_ptr<orc::LLJIT>> j = orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(jtmb)).create();
  if (!j) return j.takeError();
  // Measures each object's machine code as it is linked (compiles run on this thread, under mu_).
  (*j)->getObjTransformLayer().setTransform(
      [this](std::unique_ptr<MemoryBuffer> obj) -> Expected<std::unique_ptr<MemoryBuffer>> {
        Expected<std::unique_ptr<object::ObjectFile>> o = object::ObjectFile::createObjectFile(obj->getMemBufferRef());
        if (!o) return o.takeError();
        uint64_t text = 0;
        for (const object::SectionRef& s : (*o)->sections())
          if (s.isText()) text += s.getSize();
        last_object_text_ = text;
        last_object_ = std::make_shared<const std::string>(obj->getBufferStart(), obj->getBufferSize());
        // BAREFLOW_JIT_DUMP=DIR keeps each object (objdump -d DIR/N.o): to read what LLVM made.
        if (const char* dir = std::getenv("BAREFLOW_JIT_DUMP"); dir && *dir) {
          const std::string path = std::string(dir) + "/" + std::to_string(dumped_++) + ".o";
          if (FILE* f = std::fopen(path.c_str(), "wb")) {
            std::fwrite(obj->getBufferStart(), 1, obj->getBufferSize(), f);
            std::fclose(f);
          }
        }
        return obj;
      });
  // The optimizer may turn loops into memset/memcpy/memmove; the reference kernels call libm (at
  // O0, where nothing folds them away, they stay reachable). Nothing else is linked into JIT'd
  // code: native::runtime_symbols(), which the engine's own loader resolves from too.
  orc::MangleAndInterner mangle((*j)->getExecutionSession(), (*j)->getDataLayout());
  orc::SymbolMap libc;
  for (const native::Symbol& f : native::runtime_symbols())
    libc[mangle(f.name)] = {orc::ExecutorAddr::fromPtr(f.addr), JITSymbolFlags::Exported | JITSymbolFlags::Callable};
  if (llvm::Error e = (*j)->getMainJITDylib().define(orc::absoluteSymbols(std::move(libc)))) return e;
  slot = std::move(*j);
  return *slot;
}

Expected<Variant> Compiler::compile(const Spec& spec, Tier tier, const std::string& name, const CompileOptions& o) {
  assert(tier > Tier::Aot && tier < Tier::Count);
  if (spec.fused && tier == Tier::Interp) return err("fused kernels are compiled tiers only");
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const auto elapsed_ms = [&] { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); };
  std::lock_guard<std::mutex> lock(mu_);
  auto ctx = std::make_unique<LLVMContext>();
  Variant v;
  v.tier = tier;
  v.id = ++last_id_;
  Expected<std::unique_ptr<Module>> m =
      specialize(*ctx, spec, name, o.reassoc, o.miscompile, tier == Tier::Interp, cpu_, features_, &v.family);
  if (!m) return m.takeError();

  if (tier == Tier::Interp) {
    if (o.interp_slot >= kInterpSlots) return err("no interpreter slot " + std::to_string(o.interp_slot));
    optimize(**m, nullptr, tier);
    std::string why;
    std::unique_ptr<ExecutionEngine> ee(
        EngineBuilder(std::move(*m)).setEngineKind(EngineKind::Interpreter).setErrorStr(&why).create());
    if (!ee) return err("cannot create the LLVM interpreter: " + why);
    Function* fn = ee->FindFunctionNamed(name);
    if (!fn) return err("interpreter lost " + name);
    InterpSlot& s = g_slots[o.interp_slot];
    std::lock_guard<std::mutex> slot_lock(s.mu);
    s.ee.reset();
    s.ee = std::move(ee);
    s.ctx = std::move(ctx);
    s.fn = fn;
    slot_owner_[o.interp_slot] = v.id;
    v.fn = kTrampolines[o.interp_slot];
    v.compile_ms = elapsed_ms();
    return v;
  }

  Expected<orc::LLJIT&> j = jit_for(tier);
  if (!j) return j.takeError();
  if (!tm_) {
    Expected<std::unique_ptr<TargetMachine>> tm = jtmb_->createTargetMachine();
    if (!tm) return tm.takeError();
    tm_ = std::move(*tm);
  }
  (*m)->setDataLayout(tm_->createDataLayout());
  (*m)->setTargetTriple(tm_->getTargetTriple().str());
  v.parse_ms = elapsed_ms();
  optimize(**m, tm_.get(), tier);
  v.optimize_ms = elapsed_ms() - v.parse_ms;
  orc::ResourceTrackerSP rt = j->getMainJITDylib().createResourceTracker();
  if (llvm::Error e = j->addIRModule(rt, orc::ThreadSafeModule(std::move(*m), std::move(ctx)))) return e;
  if (llvm::Error e = link(*j, std::move(rt), name, spec.fused, v)) return e;  // compiles now
  v.compile_ms = elapsed_ms();
  return v;
}

llvm::Error Compiler::link(orc::LLJIT& j, IntrusiveRefCntPtr<orc::ResourceTracker> rt, const std::string& name,
                           bool fused, Variant& v) {
  Expected<orc::ExecutorAddr> addr = j.lookup(name);
  if (!addr) return joinErrors(addr.takeError(), rt->remove());
  trackers_.emplace(v.id, std::move(rt));
  if (fused) {
    v.fused = addr->toPtr<FusedFn>();
  } else {
    v.fn = addr->toPtr<MatvecFn>();
  }
  v.code_bytes = last_object_text_;
  v.object = std::move(last_object_);
  code_bytes_ += v.code_bytes;
  return llvm::Error::success();
}

Expected<Variant> Compiler::load(const Spec& spec, Tier tier, const std::string& name,
                                 const std::vector<uint8_t>& object) {
  assert(tier >= Tier::O0 && tier < Tier::Count);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  Variant v;
  v.tier = tier;
  v.id = ++last_id_;
  v.family = kernel_family(features_, false);
  // The engine's own loader, not ORC's: no LLJIT to create on a warm start, and the same path
  // the LLVM-free appliance takes.
  native::LoadedObject o;
  try {
    o = native::LoadedObject::load(object);
  } catch (const bf::Error& e) {
    return err(e.message);
  }
  void* addr = o.find(name);
  if (!addr) return err("the object does not define " + name);
  if (spec.fused) {
    v.fused = reinterpret_cast<FusedFn>(addr);
  } else {
    v.fn = reinterpret_cast<MatvecFn>(addr);
  }
  v.code_bytes = o.code_bytes();
  v.object = std::make_shared<const std::string>(reinterpret_cast<const char*>(object.data()), object.size());
  code_bytes_ += v.code_bytes;
  loaded_.emplace(v.id, std::move(o));
  v.compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return v;
}

std::string variant_symbol(const std::string& unit, Tier tier, const std::string& key) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "_%016llx", (unsigned long long)fnv1a(key));
  return "bf_" + unit + "_" + tier_name(tier) + buf;
}

std::string Compiler::key_of(const Spec& spec, Tier tier, bool reassoc) const {
  static const uint64_t bitcode_hash = fnv1a(std::string_view(bf_kernels_bc_start, kernel_bitcode_size()));
  const Matrix& W = spec.W;
  char head[256];
  std::snprintf(head, sizeof head, "%s %s type=%d group=%d rows=%lld cols=%lld rows2=%lld rows3=%lld reassoc=%d ",
                spec.fused ? fusion_name(spec.fusion) : "matvec", tier_name(tier), int(W.type), int(W.group),
                (long long)W.rows, (long long)W.cols, (long long)spec.rows2, (long long)spec.rows3, int(reassoc));
  char tail[96];
  std::snprintf(tail, sizeof tail, " llvm=%s bitcode=%016llx:%zu build=", LLVM_VERSION_STRING,
                (unsigned long long)bitcode_hash, kernel_bitcode_size());
  // A build without an id matches nothing: a key that cannot equal another process's.
  const std::string& build = engine_build_id();
  return std::string(head) + "cpu=" + cpu_ + " features=" + features_ + tail +
         (build.empty() ? "none-" + std::to_string(uint64_t(this) ^ uint64_t(std::time(nullptr))) : build);
}

}  // namespace bf::jit
