#include "kernel/sched/sched.h"

#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/lib/errno.h"
#include "kernel/lib/exit.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/vm.h"
#include "kernel/syscall/uaccess.h"

extern "C" char user_switch_stub[], user_switch_restored[], user_switch_end[];

namespace bf::kern {
namespace {

enum class State : uint8_t { kFree, kRunnable, kBlocked };

constexpr unsigned kMaxThreads = 64;
constexpr unsigned kXsaveBytes = 4096;

struct Thread {
  uint64_t uarea;  // KVM workaround: user-visible [xsave area 4 KiB | TrapFrame] (0 until needed)
  State state;
  int tid;
  uint64_t futex;     // address waited on (0: a plain sleep)
  uint64_t deadline;  // monotonic ns; 0 = none
  int64_t timeout_result;
  uint64_t clear_tid;
  uint64_t fs, gs;
  TrapFrame ctx;
};

Thread g_threads[kMaxThreads];
alignas(64) uint8_t g_xsave[kMaxThreads][kXsaveBytes];
unsigned g_cur = 0;
int g_next_tid = 2;
bool g_need_switch = false;  // the current thread stopped being runnable
bool g_timer_on = false;
int g_owner = 0;  // ring-3 switching: the thread whose vector state is in the CPU (-1: nobody's)

void save_fpu(unsigned i) {
  if (g_cpu.xsave) asm volatile("xsave64 %0" : "+m"(g_xsave[i]) : "a"(uint32_t(g_cpu.xcr0)), "d"(0u) : "memory");
  else asm volatile("fxsave64 %0" : "+m"(g_xsave[i]) : : "memory");
}

void restore_fpu(unsigned i) {
  if (g_cpu.xsave) asm volatile("xrstor64 %0" : : "m"(g_xsave[i]), "a"(uint32_t(g_cpu.xcr0)), "d"(0u) : "memory");
  else asm volatile("fxrstor64 %0" : : "m"(g_xsave[i]) : "memory");
}

unsigned runnable_count() {
  unsigned n = 0;
  for (const Thread& t : g_threads) n += t.state == State::kRunnable;
  return n;
}

void set_timer(bool on) {
  // PIT channel 0 at 100 Hz on IRQ 0, unmasked only while threads compete for the CPU: a lone
  // thread runs without interrupts (ring 0 is expensive under nested virtualization).
  if (on == g_timer_on) return;
  g_timer_on = on;
  if (on) {
    constexpr uint32_t kDivisor = 11932;
    x86::outb(0x43, 0x34);
    x86::outb(0x40, kDivisor & 0xFF);
    x86::outb(0x40, kDivisor >> 8);
    x86::outb(0x21, 0xFE);
  } else {
    x86::outb(0x21, 0xFF);
  }
}

// Ticks are needed while threads compete for the CPU or a sleeping thread has a deadline.
bool need_timer() {
  unsigned runnable = 0;
  for (const Thread& t : g_threads) {
    runnable += t.state == State::kRunnable;
    if (t.state == State::kBlocked && t.deadline) return true;
  }
  return runnable > 1;
}

void wake_expired() {
  bool any = false;
  for (const Thread& t : g_threads) any |= t.state == State::kBlocked && t.deadline;
  if (!any) return;
  const uint64_t now = monotonic_ns();
  for (Thread& t : g_threads)
    if (t.state == State::kBlocked && t.deadline && now >= t.deadline) {
      t.state = State::kRunnable;
      t.ctx.rax = uint64_t(t.timeout_result);
    }
}

int64_t block_current(uint64_t futex, uint64_t deadline, int64_t timeout_result) {
  Thread& t = g_threads[g_cur];
  t.state = State::kBlocked;
  t.futex = futex;
  t.deadline = deadline;
  t.timeout_result = timeout_result;
  g_need_switch = true;
  return kBlocked;
}

unsigned wake(uint64_t futex, unsigned n) {
  unsigned woken = 0;
  for (Thread& t : g_threads) {
    if (woken >= n) break;
    if (t.state == State::kBlocked && t.futex == futex && futex) {
      t.state = State::kRunnable;
      t.ctx.rax = 0;
      ++woken;
    }
  }
  return woken;
}

// Under the KVM workaround ring 0 cannot execute XSAVE/XRSTOR (the hypervisor's emulator fails on
// them), so the vector state is switched in ring 3 by user_switch_stub, with per-thread areas in
// user memory.
bool ring3_switch() { return g_user_entry; }

bool ensure_uarea(Thread& t) {
  if (t.uarea) return true;
  const int64_t va = vm_map_anon(0, 2 * kPageSize, kPteU | kPteW | kPteNx, false);
  if (va < 0) return false;
  t.uarea = uint64_t(va);
  const uint32_t mxcsr = 0x1F80;  // XRSTOR of a never-saved area: init state, default MXCSR
  memcpy(reinterpret_cast<void*>(t.uarea + 24), &mxcsr, 4);
  return true;
}

bool uwrite_ok(uint64_t p, uint64_t n) { return user_range_ok(vm_tables(), p, n, Access::kWrite); }
bool uread_ok(uint64_t p, uint64_t n) { return user_range_ok(vm_tables(), p, n, Access::kRead); }

}  // namespace

void sched_init() {
  g_threads[0].state = State::kRunnable;
  g_threads[0].tid = 1;
  g_cur = 0;
}

int sched_current_tid() { return g_threads[g_cur].tid; }

unsigned sched_thread_count() {
  unsigned n = 0;
  for (const Thread& t : g_threads) n += t.state != State::kFree;
  return n;
}

int64_t sched_clone(TrapFrame* f, uint64_t flags, uint64_t stack, uint64_t ptid, uint64_t ctid, uint64_t tls) {
  constexpr uint64_t kVm = 0x100, kSighand = 0x800, kThread = 0x10000, kSetTls = 0x80000,
                     kParentSetTid = 0x100000, kChildClearTid = 0x200000, kChildSetTid = 0x1000000;
  if ((flags & (kVm | kThread | kSighand)) != (kVm | kThread | kSighand)) {
    klog("clone without CLONE_VM|CLONE_THREAD (a new process) is not supported: -ENOSYS");
    return -ENOSYS;
  }
  if (stack == 0 || stack >= kUserTop) return -EINVAL;
  if ((flags & kParentSetTid) && !uwrite_ok(ptid, 4)) return -EFAULT;
  if ((flags & (kChildSetTid | kChildClearTid)) && !uwrite_ok(ctid, 4)) return -EFAULT;
  unsigned slot = kMaxThreads;
  for (unsigned i = 0; i < kMaxThreads && slot == kMaxThreads; ++i)
    if (g_threads[i].state == State::kFree) slot = i;
  if (slot == kMaxThreads) return -EAGAIN;
  if (ring3_switch() && (!g_cpu.xsave || !ensure_uarea(g_threads[g_cur]) || !ensure_uarea(g_threads[slot])))
    return -EAGAIN;
  Thread& c = g_threads[slot];
  const uint64_t keep_area = c.uarea;
  c = Thread{};
  c.uarea = keep_area;
  if (ring3_switch()) {
    // A fresh area: the child starts with the initial vector state.
    memset(reinterpret_cast<void*>(c.uarea), 0, kPageSize);
    const uint32_t mxcsr = 0x1F80;
    memcpy(reinterpret_cast<void*>(c.uarea + 24), &mxcsr, 4);
  }
  c.tid = g_next_tid++;
  c.ctx = *f;
  c.ctx.rax = 0;  // the child sees 0
  c.ctx.rsp = stack;
  // Both system-call entries leave the user return address in RCX and RFLAGS in R11 (the frame's
  // rip is only fixed up after the call on the KVM-workaround path).
  c.ctx.rip = f->rcx;
  c.ctx.rflags = (f->r11 & ~0x23000ull) | 0x202;
  c.fs = (flags & kSetTls) ? tls : x86::rdmsr(x86::kMsrFsBase);
  c.gs = x86::rdmsr(x86::kMsrGsBase);
  if (flags & kChildClearTid) c.clear_tid = ctid;
  if (!ring3_switch()) save_fpu(slot);  // the child starts with the parent's vector state
  c.state = State::kRunnable;
  if (flags & kParentSetTid) *reinterpret_cast<int32_t*>(ptid) = c.tid;
  if (flags & kChildSetTid) *reinterpret_cast<int32_t*>(ctid) = c.tid;
  set_timer(need_timer());
  return c.tid;
}

int64_t sched_clone3(TrapFrame* f, uint64_t uargs, uint64_t size) {
  // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, ...
  if (size < 64) return -EINVAL;
  if (!uread_ok(uargs, 64)) return -EFAULT;
  const uint64_t* a = reinterpret_cast<const uint64_t*>(uargs);
  if (a[1] & 0x1000) return -EINVAL;  // CLONE_PIDFD
  return sched_clone(f, a[0], a[5] + a[6], a[3], a[2], a[7]);
}

int64_t sched_futex(uint64_t uaddr, uint64_t op, uint64_t val, uint64_t utimeout, uint64_t val3) {
  const uint64_t cmd = op & 0x7F;  // without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME
  switch (cmd) {
    case 0:     // WAIT (relative timeout)
    case 9: {   // WAIT_BITSET (absolute timeout)
      if (!uread_ok(uaddr, 4) || (uaddr & 3)) return -EFAULT;
      if (*reinterpret_cast<const uint32_t*>(uaddr) != uint32_t(val)) return -EAGAIN;
      uint64_t deadline = 0;
      if (utimeout) {
        if (!uread_ok(utimeout, 16)) return -EFAULT;
        const uint64_t* ts = reinterpret_cast<const uint64_t*>(utimeout);
        if (ts[1] >= 1000000000ull) return -EINVAL;
        const uint64_t ns = ts[0] * 1000000000ull + ts[1];
        if (cmd == 0) deadline = monotonic_ns() + ns;
        else if (op & 256) deadline = ns > realtime_ns() ? monotonic_ns() + (ns - realtime_ns()) : 1;
        else deadline = ns ? ns : 1;
      }
      if (sched_thread_count() == 1 && !deadline) {
        klog("futex wait on 0x%lx with no other thread to wake it: -ETIMEDOUT", uaddr);
        return -ETIMEDOUT;
      }
      return block_current(uaddr, deadline, -ETIMEDOUT);
    }
    case 1:     // WAKE
    case 10: {  // WAKE_BITSET
      (void)val3;
      return int64_t(wake(uaddr, val > kMaxThreads ? kMaxThreads : unsigned(val)));
    }
    default: return -ENOSYS;
  }
}

int64_t sched_yield_call() {
  if (runnable_count() > 1) g_need_switch = true;
  return 0;
}

int64_t sched_sleep_ns(uint64_t ns) {
  if (sched_thread_count() == 1) {
    const uint64_t until = monotonic_ns() + ns;
    while (monotonic_ns() < until) asm volatile("pause");
    return 0;
  }
  return block_current(0, monotonic_ns() + (ns ? ns : 1), 0);
}

int64_t sched_exit_thread(int status) {
  Thread& t = g_threads[g_cur];
  if (sched_thread_count() == 1) machine_exit(status);
  // CLONE_CHILD_CLEARTID: zero the tid word and wake a joiner.
  if (t.clear_tid && uwrite_ok(t.clear_tid, 4)) {
    *reinterpret_cast<int32_t*>(t.clear_tid) = 0;
    wake(t.clear_tid, 1);
  }
  t.state = State::kFree;
  g_need_switch = true;
  return kBlocked;
}

void sched_return(TrapFrame* f, bool tick) {
  if (sched_thread_count() <= 1 && !g_need_switch) return;
  // Never preempt user_switch_stub itself: it finishes within a few instructions.
  if (tick && ring3_switch() && f->rip >= uint64_t(user_switch_stub) && f->rip < uint64_t(user_switch_end)) return;
  wake_expired();
  if (!g_need_switch && !(tick && runnable_count() > 1)) {
    set_timer(need_timer());
    return;
  }
  g_need_switch = false;
  // Save the current thread (unless it exited), then pick the next runnable one round-robin.
  Thread& cur = g_threads[g_cur];
  const bool cur_alive = cur.state != State::kFree;
  if (cur_alive) {
    cur.ctx = *f;  // never inside user_switch_stub: ticks there are ignored (see above)
    cur.fs = x86::rdmsr(x86::kMsrFsBase);
    cur.gs = x86::rdmsr(x86::kMsrGsBase);
    if (!ring3_switch()) save_fpu(g_cur);
  } else if (g_owner == int(g_cur)) {
    g_owner = -1;  // an exited thread's vector state is not worth saving
  }
  for (uint64_t spins = 0;; ++spins) {
    for (unsigned k = 1; k <= kMaxThreads; ++k) {
      const unsigned i = (g_cur + k) % kMaxThreads;
      if (g_threads[i].state != State::kRunnable) continue;
      g_cur = i;
      Thread& n = g_threads[i];
      *f = n.ctx;
      x86::wrmsr(x86::kMsrFsBase, n.fs);
      x86::wrmsr(x86::kMsrGsBase, n.gs);
      if (!ring3_switch()) {
        restore_fpu(i);
      } else if (g_owner != int(i)) {
        // Return through user_switch_stub, which saves the owner's vector state, loads n's and
        // then n's registers.
        memcpy(reinterpret_cast<void*>(n.uarea + kPageSize), &n.ctx, sizeof(TrapFrame));
        f->rip = uint64_t(user_switch_stub);
        f->rdi = g_owner >= 0 && g_threads[g_owner].state != State::kFree ? g_threads[g_owner].uarea : 0;
        f->rsi = n.uarea;
        f->rbx = n.uarea + kPageSize;
        f->rflags = 0x202;
        g_owner = int(i);  // the stub runs to completion before anything else can happen
      }
      set_timer(need_timer());
      return;
    }
    // Nobody can run: wait for the earliest deadline, or report the deadlock.
    uint64_t earliest = 0;
    for (const Thread& t : g_threads)
      if (t.state == State::kBlocked && t.deadline && (!earliest || t.deadline < earliest)) earliest = t.deadline;
    if (!earliest) {
      klog("deadlock: every thread waits on a futex and none has a timeout");
      machine_exit(kExitPanic);
    }
    while (monotonic_ns() < earliest) asm volatile("pause");
    wake_expired();
  }
}

}  // namespace bf::kern
