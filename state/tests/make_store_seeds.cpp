// Writes a few valid stores into DIR: the fuzzer's seeds (checksums make valid stores unreachable
// by blind mutation).
#include <cstdio>
#include <string>

#include "state/records.h"
#include "state/store.h"

int main(int argc, char** argv) {
  using namespace bf::state;
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  for (int n = 1; n <= 3; n++) {
    const std::string path = dir + "/store" + std::to_string(n) + ".bfs";
    std::remove(path.c_str());
    Store s = Store::open(path);
    for (int i = 0; i < n; i++) {
      ModelState m;
      m.description = "model " + std::to_string(i);
      m.sites = {{"wq", 10, 100, "O3", "q8_0"}};
      s.put(Kind::Model, model_key(std::to_string(i)), encode(m));
      RunRecord r;
      r.run = uint64_t(i + 1);
      r.model = "m.bin";
      s.put(Kind::Run, run_key(std::to_string(i), r.run), encode(r));
      s.commit();
    }
    if (n == 3) {
      s.erase(Kind::Model, model_key("0"));
      s.commit();
    }
  }
  return 0;
}
