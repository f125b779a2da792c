// Memory check of the CUDA kernels, in the spirit of compute-sanitizer's memcheck: every launcher
// of csrc/ runs through the host emulation (emulation.h) on buffers of exactly the size its
// contract names, over a sweep of shapes including the awkward ones, in a binary built with
// AddressSanitizer and UndefinedBehaviorSanitizer (tests/test_emulation.py). Any read or write
// outside a buffer or a shared array aborts with a report. Values are checked elsewhere.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "upfirdn2d.cu"
#include "bias_act.cu"
#include "modulate.cu"
#include "eigvalsh.cu"

using namespace stylenas;

static unsigned seed = 1;
static double uniform() {
    seed = seed * 1103515245u + 12345u;
    return ((seed >> 8) & 0xFFFF) / 65536.0 - 0.5;
}

template <typename T> std::vector<T> random_buffer(size_t count) {
    std::vector<T> buffer(count);
    for (auto& value : buffer) value = T(uniform());
    return buffer;
}

static void require(const char* error, const char* what) {
    if (error != nullptr) {
        std::fprintf(stderr, "%s: launch failed: %s\n", what, error);
        std::exit(1);
    }
}

template <typename T> static void upfirdn2d_sweep(DType dtype, int& cases) {
    using Acc = typename AccType<T>::type;
    const int ups[] = {1, 2, 4}, downs[] = {1, 2, 4}, pads[] = {-2, 0, 1, 3};
    for (int up : ups)
        for (int down : downs)
            for (int f_size : {1, 3, 4, 6})
                for (int size : {1, 2, 5, 9})
                    for (int pad : pads) {
                        Upfirdn2dParams p{};
                        p.separable = (size + pad) % 2 == 0;  // both filter forms over the sweep
                        p.flip = pad > 0;
                        p.gain = 2.0;
                        p.planes = 3;
                        p.in_h = size;
                        p.in_w = size + 1;
                        p.up_x = up; p.up_y = up == 4 ? 2 : up;
                        p.down_x = down; p.down_y = down;
                        p.pad_x0 = pad; p.pad_y0 = pad + 1;
                        const int pad_x1 = f_size - 1, pad_y1 = f_size;
                        p.f_h = f_size; p.f_w = f_size;
                        const int span_y = p.in_h * p.up_y + p.pad_y0 + pad_y1 - p.f_h;
                        const int span_x = p.in_w * p.up_x + p.pad_x0 + pad_x1 - p.f_w;
                        if (span_y < 0 || span_x < 0) continue;
                        p.out_h = span_y / p.down_y + 1;
                        p.out_w = span_x / p.down_x + 1;
                        auto x = random_buffer<T>((size_t)p.planes * p.in_h * p.in_w);
                        auto f = random_buffer<Acc>(p.separable ? (size_t)p.f_w : (size_t)p.f_h * p.f_w);
                        std::vector<T> y((size_t)p.planes * p.out_h * p.out_w);
                        require(launch_upfirdn2d(dtype, x.data(), f.data(), y.data(), p, nullptr), "upfirdn2d");
                        ++cases;
                    }
}

template <typename T> static void bias_act_sweep(DType dtype, int& cases) {
    for (int64_t numel : {1, 7, 300, 1000})
        for (int64_t inner : {1, 5})
            for (int bias_size : {0, 2})
                for (int order = 0; order <= 2; ++order) {
                    if (bias_size > 0 && numel % (inner * bias_size) != 0) continue;
                    BiasActParams p{numel, inner, bias_size, 2, order, 0.2, 1.4, order == 0 ? 0.5 : -1.0};
                    auto x = random_buffer<T>(numel);
                    auto b = random_buffer<T>(bias_size);
                    auto dy = random_buffer<T>(order > 0 ? numel : 0);
                    std::vector<T> out(numel);
                    require(launch_bias_act(dtype, x.data(), bias_size ? b.data() : nullptr,
                                            order ? dy.data() : nullptr, out.data(), p, nullptr), "bias_act");
                    ++cases;
                }
}

template <typename T> static void modulate_sweep(DType dtype, int& cases) {
    for (int batch : {1, 3})
        for (int out_ch : {1, 4})
            for (int in_ch : {1, 5, 70})
                for (int taps : {1, 9, 25})
                    for (bool demodulate : {false, true}) {
                        ModulateParams p{batch, out_ch, in_ch, taps, demodulate, 1e-8};
                        auto weight = random_buffer<T>((size_t)out_ch * in_ch * taps);
                        auto styles = random_buffer<T>((size_t)batch * in_ch);
                        std::vector<T> weight_out((size_t)batch * out_ch * in_ch * taps);
                        require(launch_modulate(dtype, weight.data(), styles.data(), weight_out.data(), p, nullptr),
                                "modulate");
                        ++cases;
                    }
}

static void eigvalsh_sweep(int& cases) {
    for (int n : {1, 2, 3, 4, 5, 63, 64, 65, 66, 129})
        for (int batch : {1, 2}) {
            EigvalshParams p{batch, n};
            auto a = random_buffer<double>((size_t)batch * n * n);
            std::vector<double> eig((size_t)batch * n);
            std::vector<double> workspace(eigvalsh_workspace_size(p));
            require(launch_eigvalsh(a.data(), eig.data(), workspace.data(), p, nullptr), "eigvalsh");
            ++cases;
        }
}

int main() {
    int cases = 0;
    upfirdn2d_sweep<float>(DType::f32, cases);
    upfirdn2d_sweep<double>(DType::f64, cases);
    upfirdn2d_sweep<__half>(DType::f16, cases);
    bias_act_sweep<float>(DType::f32, cases);
    bias_act_sweep<__nv_bfloat16>(DType::bf16, cases);
    modulate_sweep<float>(DType::f32, cases);
    modulate_sweep<double>(DType::f64, cases);
    eigvalsh_sweep(cases);
    std::printf("memcheck ok: %d launches\n", cases);
    return 0;
}
