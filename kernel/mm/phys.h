// Physical memory: the boot memory map's usable RAM minus the kernel's first 2 MiB and the boot
// modules, kept as a bounded list of free ranges. Large user allocations are 2 MiB aligned so they
// can be mapped with large pages; page-table frames come from a small pool carved out of it.
#pragma once
#include <stdint.h>

#include "kernel/boot/bootinfo.h"
#include "kernel/lib/layout.h"

namespace bf::kern {

// Frames at or above clean_above are known to be zero (QEMU's -kernel loader leaves RAM above
// its modules and tables untouched); everything else is zeroed when handed out.
void phys_init(const BootInfo& bi, uint64_t clean_above);
// Not zeroed; 0 when out of memory. *dirty (optional) tells whether the frames may hold old data.
uint64_t phys_alloc(uint64_t size, uint64_t align, bool* dirty = nullptr);
uint64_t phys_alloc_zeroed(uint64_t size, uint64_t align);
void phys_free(uint64_t base, uint64_t size);
uint64_t phys_alloc_table_page();  // zeroed 4 KiB frame; 0 when out of memory
uint64_t phys_free_bytes();
uint64_t phys_top();  // end of the highest usable RAM: the direct map covers [0, phys_top)

inline void* phys_to_ptr(uint64_t p) { return reinterpret_cast<void*>(kDirectMapBase + p); }

}  // namespace bf::kern
