#include "kernel/lib/log.h"

#include <stdint.h>

#include "kernel/arch/serial.h"
#include "kernel/lib/exit.h"

namespace bf::kern {
namespace {

struct Out {
  char* buf;
  size_t cap;
  size_t n;
  void put(char c) {
    if (n + 1 < cap) buf[n] = c;
    ++n;
  }
};

void put_num(Out& o, uint64_t v, unsigned base, int width, bool zero, bool neg) {
  char tmp[24];
  int len = 0;
  do {
    tmp[len++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v && len < 23);
  if (neg) tmp[len++] = '-';
  for (int i = len; i < width; ++i) o.put(zero ? '0' : ' ');
  while (len) o.put(tmp[--len]);
}

}  // namespace

size_t kvsnprintf(char* buf, size_t cap, const char* fmt, va_list ap) {
  Out o{buf, cap, 0};
  for (const char* p = fmt; *p; ++p) {
    if (*p != '%') {
      o.put(*p);
      continue;
    }
    ++p;
    bool zero = false;
    int width = 0, lng = 0;
    if (*p == '0') zero = true, ++p;
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    while (*p == 'l') ++lng, ++p;
    if (*p == 'z') lng = 2, ++p;
    switch (*p) {
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        size_t len = 0;
        while (s[len]) ++len;
        for (size_t i = len; i < size_t(width); ++i) o.put(' ');
        for (size_t i = 0; i < len; ++i) o.put(s[i]);
        break;
      }
      case 'c': o.put(char(va_arg(ap, int))); break;
      case 'd': {
        int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
        put_num(o, v < 0 ? uint64_t(-v) : uint64_t(v), 10, width, zero, v < 0);
        break;
      }
      case 'u': put_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, zero, false); break;
      case 'x': put_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, zero, false); break;
      case 'p':
        o.put('0'), o.put('x');
        put_num(o, uint64_t(va_arg(ap, void*)), 16, 16, true, false);
        break;
      case '%': o.put('%'); break;
      case 0: --p; break;
      default: o.put('%'), o.put(*p);
    }
  }
  if (cap) buf[o.n < cap ? o.n : cap - 1] = 0;
  return o.n < cap ? o.n : cap - 1;
}

size_t ksnprintf(char* buf, size_t cap, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = kvsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

namespace {
// One console line: prefix, the formatted message (truncated to the line), newline.
void log_line(const char* prefix, const char* fmt, va_list ap) {
  char line[512];
  size_t n = ksnprintf(line, sizeof(line) - 1, "%s", prefix);
  n += kvsnprintf(line + n, sizeof(line) - 1 - n, fmt, ap);
  line[n++] = '\n';
  serial::write(serial::Port::kConsole, line, n);
}
}  // namespace

void klog(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_line("[bf] ", fmt, ap);
  va_end(ap);
}

void panic(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_line("[bf] PANIC: ", fmt, ap);
  va_end(ap);
  machine_exit(kExitPanic);
}

}  // namespace bf::kern
