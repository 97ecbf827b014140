// The --jit* flags of bareflow generate (and bench --jit's modes), parsed into jit::Options.
#pragma once

#include <string>

#include "cli/args.h"
#include "jit/options.h"

namespace bf::cli {

// Help text of the flags, for the subcommands' usage (a build without LLVM has only --jit=off).
const char* jit_usage();

// Consumes `flag` (and its value from `a`) if it is a JIT flag; throws bf::Error on a bad value, and
// on every JIT flag but --jit=off in a build without LLVM.
bool parse_jit_flag(const std::string& flag, Args& a, jit::Options* o);

}  // namespace bf::cli
