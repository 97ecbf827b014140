// The one address space: kernel identity map (first 2 MiB, supervisor), the direct map of RAM
// (upper half, supervisor, NX), and the application's regions in the lower half. Every user mapping
// is made eagerly (frames allocated, zeroed and mapped at mmap/brk time, 2 MiB pages whenever the
// size allows), so ring 3 never takes a page fault on a valid access.
#pragma once
#include <stdint.h>

#include "kernel/arch/paging.h"

namespace bf::kern {

void vm_init();  // builds and loads the kernel's tables (after phys_init)
PageTables& vm_tables();
// Device registers at phys, uncached, in the direct-map window (replacing any RAM mapping there).
// Returns where the kernel reaches them, or nullptr when a table frame cannot be allocated.
void* vm_map_device(uint64_t phys, uint64_t len);

// Leaf flags for a user mapping with Linux PROT_* bits. PROT_NONE maps supervisor-only, which
// reserves the range and makes any user access fault.
uint64_t vm_prot_flags(int prot);

// Anonymous zeroed memory. addr is a hint, or the exact place when fixed (replacing what is
// there). Returns the address or a negative errno.
int64_t vm_map_anon(uint64_t addr, uint64_t len, uint64_t flags, bool fixed);
// Maps existing frames (boot-module files, zero-copy). The frames are not freed on unmap.
// small_pages: 4 KiB pages only, so that each page's accessed bit means something.
int64_t vm_map_frames(uint64_t addr, uint64_t phys, uint64_t len, uint64_t flags, bool fixed,
                      bool small_pages = false);
// Maps fresh zeroed frames at a fixed place without region bookkeeping for brk/stack/image.
bool vm_map_fixed_owned(uint64_t addr, uint64_t len, uint64_t flags, uint64_t* phys_out);
int64_t vm_unmap(uint64_t addr, uint64_t len);
int64_t vm_protect(uint64_t addr, uint64_t len, uint64_t flags);

void vm_brk_init(uint64_t base);
uint64_t vm_brk(uint64_t want);

bool vm_range_used(uint64_t addr, uint64_t len);  // any user mapping in the range  // frames currently mapped for the application

}  // namespace bf::kern
