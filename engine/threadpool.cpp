#include "engine/threadpool.h"

#include <immintrin.h>
#include <unistd.h>

namespace bf {

namespace {
// A decode step issues a matvec every few microseconds: spinning that long keeps threads hot
// between them; past it they sleep (futex via atomic::wait) so an idle or oversubscribed machine
// gets its cores back.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  workers_.reserve(size_t(threads_ - 1));
  for (int i = 1; i < threads_; i++) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

int ThreadPool::default_threads() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : int(n);
}

void ThreadPool::drain(uint32_t generation, int thread) {
  // fn_, ctx_ and tasks_ were published before `generation`; a successful claim proves the job is
  // still running, so they are this job's.
  void (*const fn)(void*, int, int) = fn_.load(std::memory_order_relaxed);
  void* const ctx = ctx_.load(std::memory_order_relaxed);
  const int tasks = tasks_.load(std::memory_order_relaxed);
  uint64_t v = next_.load(std::memory_order_acquire);
  for (;;) {
    if (uint32_t(v >> 32) != generation || int(uint32_t(v)) >= tasks) return;
    if (!next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    fn(ctx, int(uint32_t(v)), thread);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) done_.notify_one();  // no syscall without a waiter
    v = next_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(void (*fn)(void*, int, int), void* ctx, int tasks) {
  if (threads_ == 1 || tasks <= 1) {
    for (int t = 0; t < tasks; t++) fn(ctx, t, 0);
    return;
  }
  const uint32_t g = generation_.load(std::memory_order_relaxed) + 1;
  // Close the previous job before touching its parameters: a worker still inside drain() for it
  // may have read some new parameters (say a larger task count), and must not be able to claim
  // one more task of the old generation with them. Its claim compares the whole of next_, so
  // moving next_ to generation g (with no task available yet) makes every such claim fail.
  next_.store(uint64_t(g) << 32 | 0x7fffffffu, std::memory_order_seq_cst);
  fn_.store(fn, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  tasks_.store(tasks, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  next_.store(uint64_t(g) << 32, std::memory_order_release);
  generation_.store(g, std::memory_order_release);
  generation_.notify_all();
  drain(g, 0);
  for (int spin = 0;; spin++) {
    const int d = done_.load(std::memory_order_acquire);
    if (d == tasks) return;
    if (spin < kSpinIterations) {
      _mm_pause();
    } else {
      done_.wait(d, std::memory_order_acquire);
    }
  }
}

void ThreadPool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; spin++) {
      _mm_pause();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;
    drain(g, index);
  }
}

}  // namespace bf
