// bias_act: x + bias, activation (or its first/second derivative times dy), gain, clamp.
#include "dtypes.cuh"
#include "bias_act.cuh"

namespace stylenas {

// Index is int when the tensor has fewer than 2^31 elements (the usual case: 64-bit division
// per element is several times slower on a GPU), else int64_t.
template <typename T, typename Index>
__global__ void bias_act_kernel(const T* __restrict__ x, const T* __restrict__ b, const T* __restrict__ dy,
                                T* __restrict__ out, BiasActParams p) {
    using Acc = typename AccType<T>::type;
    const Index numel = (Index)p.numel, inner = (Index)p.inner, bias_size = (Index)p.bias_size;
    for (Index i = (Index)blockIdx.x * blockDim.x + threadIdx.x; i < numel; i += (Index)gridDim.x * blockDim.x) {
        Acc z = to_acc(x[i]);
        if (bias_size > 0) z += to_acc(b[(i / inner) % bias_size]);
        const Acc g = p.order > 0 ? to_acc(dy[i]) : Acc(0);
        out[i] = from_acc<T>(bias_act_point<Acc>(z, g, p));
    }
}

template <typename T> struct BiasActLaunch {
    static void run(const void* x, const void* b, const void* dy, void* out, BiasActParams p,
                    cudaStream_t stream) {
        const int threads = 256;
        // The grid-stride step must not overflow int either: the grid is capped at 65535 blocks.
        const auto kernel = p.numel < (int64_t(1) << 31) - 65535 * threads ? bias_act_kernel<T, int>
                                                                            : bias_act_kernel<T, int64_t>;
        SN_LAUNCH(kernel, grid_size(p.numel, threads), threads, 0, stream)(
            (const T*)x, (const T*)b, (const T*)dy, (T*)out, p);
    }
};

const char* launch_bias_act(DType dtype, const void* x, const void* b, const void* dy, void* out,
                            const BiasActParams& p, void* stream) {
    return dispatch_dtype<BiasActLaunch>(dtype, x, b, dy, out, p, (cudaStream_t)stream);
}

}  // namespace stylenas
