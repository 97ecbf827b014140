// A persistent worker pool for splitting matmul rows. With one thread it creates no thread at all
// and run() is a plain loop, so the engine runs where threads cannot be scheduled (the unikernel).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace bf {

class ThreadPool {
 public:
  // threads >= 1: the caller plus threads - 1 workers.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }
  // Calls fn(ctx, task, thread) once for every task in [0, tasks) and returns when all are done;
  // thread in [0, size()) names the thread running it (for per-thread scratch). Tasks are claimed
  // one at a time, the caller included, so a descheduled worker delays nothing: the others take
  // its share. No allocation; not reentrant.
  void run(void (*fn)(void* ctx, int task, int thread), void* ctx, int tasks);

  // Online cores (at least 1).
  static int default_threads();

 private:
  void worker(int index);
  // Claims and runs tasks of job `generation` until none is left.
  void drain(uint32_t generation, int thread);

  int threads_;
  std::vector<std::thread> workers_;
  // The current job. Atomic (relaxed) because a late worker may read them while the next job is
  // being set up; it then fails its claim and never uses what it read.
  std::atomic<void (*)(void*, int, int)> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int> tasks_{0};
  // (generation << 32) | next unclaimed task. A claim is a compare-exchange that also checks the
  // generation, so a worker waking late can never claim a task of a job that has moved on.
  std::atomic<uint64_t> next_{0};
  std::atomic<int> done_{0};  // tasks finished in the current job
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace bf
