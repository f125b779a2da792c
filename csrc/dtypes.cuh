// Plumbing shared by the CUDA kernels: element types (half and bfloat16 are accumulated in
// float, float in float, double in double), launches and error reporting. Under
// -DSTYLENAS_EMULATE the kernels run on the host through emulation.h (CPU tests).
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "common.h"

#ifdef STYLENAS_EMULATE
#include "emulation.h"
// SN_LAUNCH(kernel, grid, block, shared, stream)(args...) is kernel<<<grid, block, shared, stream>>>(args...).
#define SN_LAUNCH(kernel, grid, block, shared, stream) ::stylenas::emulation::launch(kernel, grid, block, shared)
#define SN_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::stylenas::emulation::dynamic_shared)
#else
#define SN_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#define SN_DYNAMIC_SHARED(type, name)                                    \
    extern __shared__ __align__(16) unsigned char sn_dynamic_shared[];   \
    type* name = reinterpret_cast<type*>(sn_dynamic_shared)
#endif

namespace stylenas {

template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v) { return T(v); }
template <> __device__ __forceinline__ double from_acc<double>(float v) { return double(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v) { return T(v); }

struct LoadAcc {
    template <typename T> __device__ __forceinline__ auto operator()(T v) const { return to_acc(v); }
};

inline const char* last_error() {
#ifdef STYLENAS_EMULATE
    return emulation::take_error();
#else
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
#endif
}

// Calls Launch<T>::run(args...) with the element type T named by `dtype`.
template <template <typename> class Launch, typename... Args>
const char* dispatch_dtype(DType dtype, Args... args) {
    switch (dtype) {
    case DType::f32: Launch<float>::run(args...); break;
    case DType::f64: Launch<double>::run(args...); break;
    case DType::f16: Launch<__half>::run(args...); break;
    case DType::bf16: Launch<__nv_bfloat16>::run(args...); break;
    default: return "stylenas: unsupported dtype";
    }
    return last_error();
}

inline unsigned int grid_size(int64_t work, int threads) {
    int64_t blocks = (work + threads - 1) / threads;
    return (unsigned int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace stylenas
