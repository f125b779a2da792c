// bias_act: x + bias, activation (or its first/second derivative times dy), gain, clamp.
#include "dtypes.cuh"
#include "bias_act.cuh"

namespace stylenas {

template <typename T>
__global__ void bias_act_kernel(const T* __restrict__ x, const T* __restrict__ b, const T* __restrict__ dy,
                                T* __restrict__ out, BiasActParams p) {
    using Acc = typename AccType<T>::type;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        Acc z = to_acc(x[i]);
        if (p.bias_size > 0) z += to_acc(b[(i / p.inner) % p.bias_size]);
        const Acc g = p.order > 0 ? to_acc(dy[i]) : Acc(0);
        out[i] = from_acc<T>(bias_act_point<Acc>(z, g, p));
    }
}

template <typename T> struct BiasActLaunch {
    static void run(const void* x, const void* b, const void* dy, void* out, BiasActParams p,
                    cudaStream_t stream) {
        const int threads = 256;
        SN_LAUNCH(bias_act_kernel<T>, grid_size(p.numel, threads), threads, 0, stream)(
            (const T*)x, (const T*)b, (const T*)dy, (T*)out, p);
    }
};

const char* launch_bias_act(DType dtype, const void* x, const void* b, const void* dy, void* out,
                            const BiasActParams& p, void* stream) {
    return dispatch_dtype<BiasActLaunch>(dtype, x, b, dy, out, p, (cudaStream_t)stream);
}

}  // namespace stylenas
