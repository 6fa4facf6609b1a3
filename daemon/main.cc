// phigated: composition root (placeholder until the foundation lands).
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("phigated 0.1.0\n");
    return 0;
  }
  std::fprintf(stderr, "phigated: not yet implemented\n");
  return 1;
}
