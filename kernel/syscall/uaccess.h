// Validation of user pointers handed to system calls. Every buffer is checked against the user
// window and the page tables (present, user, and writable when the kernel will write) before the
// kernel touches it, so a bad pointer becomes -EFAULT instead of a kernel page fault.
// Host-testable: depends only on PageTables.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernel/arch/paging.h"

namespace bf::kern {

enum class Access { kRead, kWrite };

// True if [addr, addr+len) lies inside the user window and every page of it is mapped for user
// access (and writable for kWrite). len 0 is always valid (Linux accepts it for any pointer).
bool user_range_ok(const PageTables& pt, uint64_t addr, uint64_t len, Access access);

// Length of the NUL-terminated user string at addr (at most max-1 characters); -1 if a byte
// before the terminator is not readable or the string is longer than that.
int64_t user_strnlen(const PageTables& pt, uint64_t addr, uint64_t max);

}  // namespace bf::kern
