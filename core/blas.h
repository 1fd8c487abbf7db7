// OpenBLAS kernel selection.
//
// Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise recent Xeons (Sapphire Rapids and
// later) and falls back to its generic "Prescott" SSE3 kernels: sgemm runs ~7x below the
// machine's AVX-512 rate. The kernel is chosen from OPENBLAS_CORETYPE when the library loads,
// before main(), so the only fix from inside the program is to set it and re-execute ourselves.
// A user's own OPENBLAS_CORETYPE is always respected.
#pragma once

namespace zo {

// If OpenBLAS chose a generic kernel on a CPU with AVX-512 (or AVX2) and OPENBLAS_CORETYPE is
// unset, set it (SkylakeX / Haswell) and execv this program again; returns otherwise.
// Set ZO_NO_BLAS_REEXEC=1 to disable.
void blas_select_kernels(int argc, char** argv);
// The OpenBLAS kernel in use, e.g. "SkylakeX".
const char* blas_core_name();

}  // namespace zo
