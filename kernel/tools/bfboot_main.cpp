// bfboot: `bareflow boot` as a stand-alone tool, so the kernel's boot tests can run any static
// program (--app) even while the engine does not build.
namespace bf::cli {
int cmd_boot(int argc, char** argv);
}

int main(int argc, char** argv) {
  argv[0] = const_cast<char*>("boot");
  return bf::cli::cmd_boot(argc, argv);
}
