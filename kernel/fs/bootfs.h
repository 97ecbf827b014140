// Boot modules as read-only files under "/": "/stories260K.bin", "/bareflow", ... Lookup accepts
// "/name", "name", "./name" (the working directory is "/") and "/proc/self/exe" (the application).
#pragma once
#include <stdint.h>

#include "kernel/boot/bootinfo.h"

namespace bf::kern {

struct BootFile {
  char name[kModNameMax];
  uint64_t phys;  // page aligned (both loaders are asked for page-aligned modules)
  uint64_t size;
};

void bootfs_init(const BootInfo& bi);
void bootfs_set_exe(int index);  // which file /proc/self/exe names
int bootfs_lookup(const char* path);  // index or -1
// path without its leading "/" and "./" (any number): every file lives in the root directory.
const char* bootfs_strip_root(const char* path);
const BootFile* bootfs_file(int index);
int bootfs_count();
const char* bootfs_exe_path();  // "/bareflow"

}  // namespace bf::kern
