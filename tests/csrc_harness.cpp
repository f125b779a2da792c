// CPU build of the per-element math of the CUDA kernels (csrc/*.cuh), called from the tests
// through ctypes, so the kernels' index arithmetic and derivatives are checked without a GPU.
#include <cstdint>
#include "upfirdn2d.cuh"
#include "bias_act.cuh"

using namespace stylenas;

extern "C" {

void harness_upfirdn2d(const double* x, const double* f, double* y, int64_t planes, int in_h, int in_w,
                       int out_h, int out_w, int up_x, int up_y, int down_x, int down_y, int pad_x0,
                       int pad_y0, int f_h, int f_w) {
    Upfirdn2dParams p{planes, in_h, in_w, out_h, out_w, up_x, up_y, down_x, down_y, pad_x0, pad_y0, f_h, f_w};
    auto load = [](double v) { return v; };
    for (int64_t plane = 0; plane < planes; ++plane)
        for (int oy = 0; oy < out_h; ++oy)
            for (int ox = 0; ox < out_w; ++ox)
                y[(plane * out_h + oy) * out_w + ox] =
                    upfirdn2d_point<double>(x + plane * in_h * in_w, f, p, oy, ox, load);
}

void harness_bias_act(const double* z, const double* dy, double* out, int64_t numel, int act, int order,
                      double alpha, double gain, double clamp) {
    BiasActParams p{numel, 1, 0, act, order, alpha, gain, clamp};
    for (int64_t i = 0; i < numel; ++i) out[i] = bias_act_point<double>(z[i], dy[i], p);
}

}
