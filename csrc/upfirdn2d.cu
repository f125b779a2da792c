// upfirdn2d: upsample by zero insertion, pad/crop, FIR filter, downsample, in one pass.
// One thread per output sample; the (small) filter sits in shared memory.
#include "dtypes.cuh"
#include "upfirdn2d.cuh"

namespace stylenas {

template <typename T>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const typename AccType<T>::type* __restrict__ f,
                                 T* __restrict__ y, Upfirdn2dParams p) {
    using Acc = typename AccType<T>::type;
    SN_DYNAMIC_SHARED(Acc, f_shared);
    for (int i = threadIdx.x; i < p.f_h * p.f_w; i += blockDim.x) f_shared[i] = f[i];
    __syncthreads();

    const int64_t plane_out = (int64_t)p.out_h * p.out_w;
    const int64_t plane_in = (int64_t)p.in_h * p.in_w;
    const int64_t total = p.planes * plane_out;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t plane = idx / plane_out;
        const int64_t rest = idx - plane * plane_out;
        const int oy = (int)(rest / p.out_w);
        const int ox = (int)(rest - (int64_t)oy * p.out_w);
        Acc v = upfirdn2d_point<Acc>(x + plane * plane_in, f_shared, p, oy, ox, LoadAcc());
        y[idx] = from_acc<T>(v);
    }
}

template <typename T> struct Upfirdn2dLaunch {
    static void run(const void* x, const void* f, void* y, Upfirdn2dParams p, cudaStream_t stream) {
        using Acc = typename AccType<T>::type;
        const int threads = 256;
        const unsigned int blocks = grid_size(p.planes * p.out_h * p.out_w, threads);
        const size_t shared = sizeof(Acc) * p.f_h * p.f_w;
        SN_LAUNCH(upfirdn2d_kernel<T>, blocks, threads, shared, stream)((const T*)x, (const Acc*)f, (T*)y, p);
    }
};

const char* launch_upfirdn2d(DType dtype, const void* x, const void* f, void* y,
                             const Upfirdn2dParams& p, void* stream) {
    return dispatch_dtype<Upfirdn2dLaunch>(dtype, x, f, y, p, (cudaStream_t)stream);
}

}  // namespace stylenas
