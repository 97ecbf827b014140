// Threads of the one application process, on the one CPU: clone/clone3 (CLONE_VM|CLONE_THREAD),
// futex wait/wake, sched_yield, sleeping, thread exit with CLONE_CHILD_CLEARTID. Preemptive: while
// more than one thread is runnable the PIT interrupts at 100 Hz and the running thread is switched
// round-robin. The kernel itself is never preempted (interrupts are off in ring 0) and keeps one
// stack: a switch swaps the user context in the interrupt frame that the return path restores,
// together with the vector state (XSAVE) and the FS/GS bases.
#pragma once
#include <stdint.h>

#include "kernel/arch/cpu.h"

namespace bf::kern {

constexpr int64_t kBlocked = INT64_MIN;  // a system call result: the calling thread now waits

void sched_init();
int sched_current_tid();
unsigned sched_thread_count();

// System calls. f is the calling thread's frame (for clone: the parent's registers).
int64_t sched_clone(TrapFrame* f, uint64_t flags, uint64_t stack, uint64_t ptid, uint64_t ctid, uint64_t tls);
int64_t sched_clone3(TrapFrame* f, uint64_t uargs, uint64_t size);
int64_t sched_futex(uint64_t uaddr, uint64_t op, uint64_t val, uint64_t utimeout, uint64_t val3);
int64_t sched_yield_call();
int64_t sched_sleep_ns(uint64_t ns);
// exit(2) of the calling thread; the last thread's exit ends the machine.
int64_t sched_exit_thread(int status);

// Called by the trap path before returning to ring 3: if the current thread blocked, exited or
// its time slice ended, saves it and loads the next runnable thread into f.
void sched_return(TrapFrame* f, bool tick);

}  // namespace bf::kern
