// upfirdn2d: upsample by zero insertion, pad/crop, FIR filter, downsample, in one pass.
// One thread per output sample (blocks along a plane, grid rows over planes, so the index
// arithmetic stays 32-bit); the (small) filter sits in shared memory, where each block builds the
// correlation filter from the user's taps (outer product of a separable one, flip, gain), so no
// call needs extra launches to prepare it. The StyleGAN2 cases (2x up, 2x down and plain blur with
// a 4x4 filter) get compile-time shapes.
#include "dtypes.cuh"
#include "upfirdn2d.cuh"

namespace stylenas {

template <typename T, int UP_X, int UP_Y, int DOWN_X, int DOWN_Y, int F_H, int F_W>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const typename AccType<T>::type* __restrict__ f,
                                 T* __restrict__ y, Upfirdn2dParams p) {
    using Acc = typename AccType<T>::type;
    SN_DYNAMIC_SHARED(Acc, f_shared);
    const Acc gain = Acc(p.gain);
    for (int i = threadIdx.x; i < p.f_h * p.f_w; i += blockDim.x) {
        const int ty = i / p.f_w, tx = i - ty * p.f_w;
        // upfirdn2d_point correlates; a convolution is the correlation with the flipped filter.
        const int fy = p.flip ? ty : p.f_h - 1 - ty, fx = p.flip ? tx : p.f_w - 1 - tx;
        f_shared[i] = gain * (p.separable ? f[fy] * f[fx] : f[fy * p.f_w + fx]);
    }
    __syncthreads();

    const int plane_out = p.out_h * p.out_w;  // < 2^31: checked by the bindings
    const int64_t plane_in = (int64_t)p.in_h * p.in_w;
    for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
        const T* x_plane = x + plane * plane_in;
        T* y_plane = y + plane * plane_out;
        for (int pixel = blockIdx.x * blockDim.x + threadIdx.x; pixel < plane_out; pixel += gridDim.x * blockDim.x) {
            const int oy = pixel / p.out_w;
            const int ox = pixel - oy * p.out_w;
            y_plane[pixel] = from_acc<T>(
                upfirdn2d_point<UP_X, UP_Y, DOWN_X, DOWN_Y, F_H, F_W, Acc>(x_plane, f_shared, p, oy, ox, LoadAcc()));
        }
    }
}

template <typename T, int UP_X, int UP_Y, int DOWN_X, int DOWN_Y, int F_H, int F_W>
void launch_shape(const void* x, const void* f, void* y, const Upfirdn2dParams& p, cudaStream_t stream) {
    using Acc = typename AccType<T>::type;
    const int plane_out = p.out_h * p.out_w;
    const int threads = plane_out >= 256 ? 256 : ((plane_out + 31) / 32) * 32;  // small planes: small blocks
    const unsigned int blocks_needed = grid_size(plane_out, threads);
    const unsigned int blocks_x = blocks_needed < 1024 ? blocks_needed : 1024;
    const unsigned int blocks_y = p.planes < 65535 ? (unsigned int)p.planes : 65535;
    const size_t shared = sizeof(Acc) * p.f_h * p.f_w;
    const auto kernel = upfirdn2d_kernel<T, UP_X, UP_Y, DOWN_X, DOWN_Y, F_H, F_W>;
    SN_LAUNCH(kernel, dim3(blocks_x, blocks_y), threads, shared, stream)((const T*)x, (const Acc*)f, (T*)y, p);
}

template <typename T> struct Upfirdn2dLaunch {
    static void run(const void* x, const void* f, void* y, Upfirdn2dParams p, cudaStream_t stream) {
        const bool filter4 = p.f_h == 4 && p.f_w == 4;
        const bool up2 = p.up_x == 2 && p.up_y == 2, down2 = p.down_x == 2 && p.down_y == 2;
        const bool up1 = p.up_x == 1 && p.up_y == 1, down1 = p.down_x == 1 && p.down_y == 1;
        if (filter4 && up2 && down1)
            launch_shape<T, 2, 2, 1, 1, 4, 4>(x, f, y, p, stream);
        else if (filter4 && up1 && down2)
            launch_shape<T, 1, 1, 2, 2, 4, 4>(x, f, y, p, stream);
        else if (filter4 && up1 && down1)
            launch_shape<T, 1, 1, 1, 1, 4, 4>(x, f, y, p, stream);
        else
            launch_shape<T, 0, 0, 0, 0, 0, 0>(x, f, y, p, stream);
    }
};

const char* launch_upfirdn2d(DType dtype, const void* x, const void* f, void* y,
                             const Upfirdn2dParams& p, void* stream) {
    return dispatch_dtype<Upfirdn2dLaunch>(dtype, x, f, y, p, (cudaStream_t)stream);
}

}  // namespace stylenas
