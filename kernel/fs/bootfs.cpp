#include "kernel/fs/bootfs.h"

#include "kernel/lib/kstring.h"
#include "kernel/lib/log.h"

namespace bf::kern {
namespace {

BootFile g_files[kMaxModules];
int g_nfiles = 0;
int g_exe = -1;
char g_exe_path[kModNameMax + 1];

}  // namespace

void bootfs_init(const BootInfo& bi) {
  KASSERT(bi.nmods <= kMaxModules && g_nfiles == 0);  // bootinfo.cpp bounds the list; called once
  for (unsigned i = 0; i < bi.nmods; ++i) {
    BootFile& f = g_files[g_nfiles++];
    kstrlcpy(f.name, bi.mods[i].name, sizeof f.name);
    f.phys = bi.mods[i].start;
    f.size = bi.mods[i].end - bi.mods[i].start;
  }
}

void bootfs_set_exe(int index) {
  KASSERT(index >= 0 && index < g_nfiles);
  g_exe = index;
  ksnprintf(g_exe_path, sizeof g_exe_path, "/%s", g_files[index].name);
}

const char* bootfs_strip_root(const char* path) {
  for (int guard = 0; guard < 64; ++guard) {
    if (path[0] == '/') ++path;
    else if (path[0] == '.' && path[1] == '/') path += 2;
    else break;
  }
  return path;
}

int bootfs_lookup(const char* path) {
  if (kstrcmp(path, "/proc/self/exe") == 0) return g_exe;
  path = bootfs_strip_root(path);
  for (int i = 0; i < g_nfiles; ++i)
    if (kstrcmp(path, g_files[i].name) == 0) return i;
  return -1;
}

const BootFile* bootfs_file(int index) { return index >= 0 && index < g_nfiles ? &g_files[index] : nullptr; }
int bootfs_count() { return g_nfiles; }
const char* bootfs_exe_path() { return g_exe_path; }

}  // namespace bf::kern
