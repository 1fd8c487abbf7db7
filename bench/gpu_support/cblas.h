/* A minimal row-major CBLAS (sgemm, sgemv) for bench/gpu.sh on GPU machines without OpenBLAS: the
   CPU reference kernels (core/ops.cpp) link against it there. Plain loops with double accumulation:
   slow and exact enough to be the oracle the GPU kernels are compared with. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void cblas_sgemv(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE t, int M, int N, float alpha, const float* A, int lda,
                 const float* x, int incx, float beta, float* y, int incy);
/* What zo asks OpenBLAS about itself (core/blas.cpp, zo bench forward). */
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
#ifdef __cplusplus
}
#endif
