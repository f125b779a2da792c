// Weight modulation and demodulation of StyleGAN2's modulated convolution, fused:
// one block per (sample n, output channel o) computes
//   d = 1 / sqrt(sum_{i, t} (weight[o, i, t] * styles[n, i])^2 + eps)   (1 without demodulation)
// and writes weight_out[n, o, i, t] = weight[o, i, t] * styles[n, i] * d in the same pass, instead
// of the four passes over [N, O, I, kh, kw] of the plain PyTorch code. (The non-fused form needs
// only the coefficients d, which ops/modulated_conv2d.py gets from one matrix product.)
#include "dtypes.cuh"

namespace stylenas {

constexpr int kModulateThreads = 256;

template <typename T>
__global__ void modulate_kernel(const T* __restrict__ weight, const T* __restrict__ styles,
                                T* __restrict__ weight_out, ModulateParams p) {
    using Acc = typename AccType<T>::type;
    __shared__ Acc partial[kModulateThreads];
    const int o = blockIdx.x;
    const int n = blockIdx.y;
    const int row = p.in_ch * p.taps;
    const T* w = weight + (int64_t)o * row;
    const T* s = styles + (int64_t)n * p.in_ch;

    Acc d = Acc(1);
    if (p.demodulate) {
        Acc sum = 0;
        for (int j = threadIdx.x; j < row; j += blockDim.x) {
            Acc v = to_acc(w[j]) * to_acc(s[j / p.taps]);
            sum += v * v;
        }
        partial[threadIdx.x] = sum;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
            if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
            __syncthreads();
        }
        d = Acc(1) / sqrt(partial[0] + Acc(p.eps));
    }
    T* out = weight_out + ((int64_t)n * p.out_ch + o) * row;
    for (int j = threadIdx.x; j < row; j += blockDim.x)
        out[j] = from_acc<T>(to_acc(w[j]) * to_acc(s[j / p.taps]) * d);
}

template <typename T> struct ModulateLaunch {
    static void run(const void* weight, const void* styles, void* weight_out, ModulateParams p,
                    cudaStream_t stream) {
        dim3 grid(p.out_ch, p.batch);
        SN_LAUNCH(modulate_kernel<T>, grid, kModulateThreads, 0, stream)(
            (const T*)weight, (const T*)styles, (T*)weight_out, p);
    }
};

const char* launch_modulate(DType dtype, const void* weight, const void* styles, void* weight_out,
                            const ModulateParams& p, void* stream) {
    return dispatch_dtype<ModulateLaunch>(dtype, weight, styles, weight_out, p, (cudaStream_t)stream);
}

}  // namespace stylenas
