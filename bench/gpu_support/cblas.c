/* See cblas.h. Row-major only (all zo uses). */
#include "cblas.h"

void cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  (void)o;
#pragma omp parallel for
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = 0;
      for (int k = 0; k < K; k++) {
        float a = ta == CblasNoTrans ? A[(long)m * lda + k] : A[(long)k * lda + m];
        float b = tb == CblasNoTrans ? B[(long)k * ldb + n] : B[(long)n * ldb + k];
        s += (double)a * b;
      }
      float* c = &C[(long)m * ldc + n];
      *c = (float)(alpha * s + (beta != 0.0f ? (double)beta * *c : 0.0));
    }
}

void cblas_sgemv(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE t, int M, int N, float alpha, const float* A, int lda,
                 const float* x, int incx, float beta, float* y, int incy) {
  (void)o;
  int rows = t == CblasNoTrans ? M : N, cols = t == CblasNoTrans ? N : M;
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int c = 0; c < cols; c++) s += (double)(t == CblasNoTrans ? A[(long)r * lda + c] : A[(long)c * lda + r]) * x[(long)c * incx];
    float* yr = &y[(long)r * incy];
    *yr = (float)(alpha * s + (beta != 0.0f ? (double)beta * *yr : 0.0));
  }
}

char* openblas_get_corename(void) { return (char*)"plain-loop (bench/gpu_support)"; }
char* openblas_get_config(void) { return (char*)"none: bench/gpu_support/cblas.c"; }
int openblas_get_num_threads(void) { return 1; }
