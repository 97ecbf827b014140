// The one error type of the engine: a message naming the file (or flag) and the problem.
// The CLI prints it as a single line and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace bf {

struct Error : std::runtime_error {
  explicit Error(const std::string& m) : std::runtime_error(m), message(m) {}
  // The whole message: what() stops at a NUL that a model file's string may hold.
  std::string message;
};

// Throws Error("<where>: <what>").
[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw Error(where + ": " + what);
}

// `s` made safe to print on one terminal line: control bytes, DEL, C1 controls and bytes that are
// not valid UTF-8 become \n, \t, \r, \0, \\ or \xHH; valid UTF-8 text is kept as it is. File names,
// flag values and strings read from model files reach messages through this.
inline std::string printable(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
      i++;
      continue;
    }
    // The length of a valid UTF-8 sequence starting at i (0 if none); overlong forms, surrogates
    // and C1 controls (U+0080..U+009F, which some terminals obey) are escaped byte by byte.
    size_t n = 0;
    if (c >= 0xc2 && c <= 0xf4) {
      n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
      if (i + n > s.size()) n = 0;
      for (size_t k = 1; k < n; k++)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) n = 0;
      if (n) {
        const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
        if ((c == 0xc2 && c1 < 0xa0) || (c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) ||
            (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90))
          n = 0;
      }
    }
    if (n) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\0': out += "\\0"; break;
      case '\\': out += "\\\\"; break;
      default: out += "\\x"; out += hex[c >> 4]; out += hex[c & 15];
    }
    i++;
  }
  return out;
}

}  // namespace bf
