// The stories260K files the engine tests run on (the shared models and those make_models.py
// derives), as a gtest parameter list with names gtest accepts.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <string>

namespace bf::testing {

inline auto stories260k_files() {
  return ::testing::Values("stories260K.bin", "stories260K-f32.gguf", "stories260K-q8_0.gguf", "stories260K-q8_runq.bin");
}

// "stories260K-f32.gguf" -> "stories260K_f32_gguf"
inline std::string file_test_name(const ::testing::TestParamInfo<const char*>& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!isalnum(uint8_t(c))) c = '_';
  return s;
}

}  // namespace bf::testing
