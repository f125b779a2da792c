// Shared declarations of the StyleNAS CUDA kernels: plain C++ (no torch headers), so the
// .cu files compile fast, and a host compiler builds them too for the CPU tests (emulation.h).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define SN_HD __host__ __device__ __forceinline__
#else
#define SN_HD inline
#endif

namespace stylenas {

// Element types the kernels are instantiated for; bindings.cpp maps torch dtypes onto these.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

struct Upfirdn2dParams {
    int64_t planes;        // N * C
    int in_h, in_w;
    int out_h, out_w;
    int up_x, up_y;
    int down_x, down_y;
    int pad_x0, pad_y0;    // the right/bottom pads only determine out_h/out_w
    int f_h, f_w;          // filter taps (f_h == f_w for a separable filter)
    bool separable;        // f holds f_w taps and the filter is f x f, else f is [f_h, f_w]
    bool flip;             // true: correlate with f; false: convolve (flip it)
    double gain;           // multiplies the 2-D filter
};

struct BiasActParams {
    int64_t numel;
    int64_t inner;         // product of the sizes after `dim`
    int bias_size;         // size of `dim`, or 0 for no bias
    int act;               // see bias_act.cuh
    int order;             // 0: y = act(x + b); 1: dy * d act; 2: dy * d2 act
    double alpha, gain, clamp;   // clamp < 0: no clamp
};

struct ModulateParams {
    int batch, out_ch, in_ch, taps;   // taps = kh * kw
    bool demodulate;
    double eps;
};

struct EigvalshParams {
    int batch, n;
};

// Launchers: return nullptr on success, else the CUDA error string. `stream` is a cudaStream_t.
const char* launch_upfirdn2d(DType dtype, const void* x, const void* f, void* y,
                             const Upfirdn2dParams& p, void* stream);
const char* launch_bias_act(DType dtype, const void* x, const void* b, const void* dy, void* out,
                            const BiasActParams& p, void* stream);
const char* launch_modulate(DType dtype, const void* weight, const void* styles, void* weight_out,
                            const ModulateParams& p, void* stream);
// a [batch, n, n] float64 (lower triangle read) -> eig [batch, n] ascending; `workspace` holds
// eigvalsh_workspace_size(p) doubles.
const char* launch_eigvalsh(const double* a, double* eig, double* workspace, const EigvalshParams& p,
                            void* stream);
int64_t eigvalsh_workspace_size(const EigvalshParams& p);

}  // namespace stylenas
