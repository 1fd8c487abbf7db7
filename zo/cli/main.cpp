#include <cstdio>

#include "zo/version.h"

int main() {
  std::printf("zo %s\n", zo::version());
  return 0;
}
