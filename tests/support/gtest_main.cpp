// GoogleTest main for zo's tests: selects the OpenBLAS kernels as the zo binary does, so the
// tests exercise the code paths users run.
#include <gtest/gtest.h>

#include "core/blas.h"

int main(int argc, char** argv) {
  zo::blas_select_kernels(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
