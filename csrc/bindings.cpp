// Python bindings of the StyleNAS CUDA kernels: tensor checks, output allocation, stream and
// device selection. The kernels themselves live in the .cu files and see raw pointers only.
#include <torch/extension.h>
#include <limits>
#include "common.h"

#ifdef STYLENAS_EMULATE
// Host emulation build (CPU tests, see emulation.h): the kernels take CPU tensors.
#include "emulation.h"
#define SN_ON_KERNEL_DEVICE(t) ((t).is_cpu())
#define SN_DEVICE_GUARD(t)
#else
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define SN_ON_KERNEL_DEVICE(t) ((t).is_cuda())
#define SN_DEVICE_GUARD(t) const c10::cuda::CUDAGuard device_guard((t).device())
#endif

namespace {

using stylenas::DType;

DType dtype_of(const torch::Tensor& t) {
    switch (t.scalar_type()) {
    case torch::kFloat32: return DType::f32;
    case torch::kFloat64: return DType::f64;
    case torch::kFloat16: return DType::f16;
    case torch::kBFloat16: return DType::bf16;
    default: TORCH_CHECK(false, "stylenas: unsupported dtype ", t.scalar_type());
    }
}

// The accumulation type of the kernels: double for double tensors, float otherwise.
torch::ScalarType acc_type_of(const torch::Tensor& t) {
    return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// Uninitialised memory for a kernel to fill. The emulation build fills it with NaN, so an output
// or workspace entry that a kernel forgets to write (or reads before writing) fails the tests
// instead of reading the zeros of a fresh host page.
torch::Tensor kernel_buffer(torch::IntArrayRef sizes, const torch::TensorOptions& options) {
    auto buffer = torch::empty(sizes, options);
#ifdef STYLENAS_EMULATE
    buffer.fill_(std::numeric_limits<double>::quiet_NaN());
#endif
    return buffer;
}

void check_launch(const char* error, const char* op) {
    TORCH_CHECK(error == nullptr, "stylenas.", op, ": CUDA kernel failed: ", error ? error : "");
}

void* current_stream() {
#ifdef STYLENAS_EMULATE
    return nullptr;
#else
    return (void*)c10::cuda::getCurrentCUDAStream().stream();
#endif
}

// x [N, C, H, W]; f [fh, fw], or [taps] for the separable filter f x f, in the accumulation dtype.
// The kernel convolves with gain * f (correlates when flip_filter), as ops/upfirdn2d.py documents.
torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x,
                        int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                        bool flip_filter, double gain) {
    TORCH_CHECK(SN_ON_KERNEL_DEVICE(x) && x.dim() == 4, "upfirdn2d: x must be a 4-D CUDA tensor");
    TORCH_CHECK(f.device() == x.device() && (f.dim() == 1 || f.dim() == 2) && f.scalar_type() == acc_type_of(x),
                "upfirdn2d: f must be a 1-D (separable) or 2-D filter on x's device in the accumulation dtype");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
    const int64_t f_h = f.size(0), f_w = f.size(f.dim() - 1);
    TORCH_CHECK(f_h * f_w <= 4096, "upfirdn2d: filters above 4096 taps are not supported by the kernel");
    SN_DEVICE_GUARD(x);
    x = x.contiguous();
    f = f.contiguous();
    const int64_t span_y = x.size(2) * up_y + pad_y0 + pad_y1 - f_h;
    const int64_t span_x = x.size(3) * up_x + pad_x0 + pad_x1 - f_w;
    TORCH_CHECK(span_y >= 0 && span_x >= 0, "upfirdn2d: the padded input is smaller than the filter");
    TORCH_CHECK((span_y / down_y + 1) * (span_x / down_x + 1) < (int64_t(1) << 31),
                "upfirdn2d: output planes above 2^31 samples are not supported by the kernel");
    const int64_t out_h = span_y / down_y + 1, out_w = span_x / down_x + 1;
    auto y = kernel_buffer({x.size(0), x.size(1), out_h, out_w}, x.options());
    if (y.numel() == 0) return y;
    stylenas::Upfirdn2dParams p;
    p.planes = x.size(0) * x.size(1);
    p.in_h = (int)x.size(2); p.in_w = (int)x.size(3);
    p.out_h = (int)out_h; p.out_w = (int)out_w;
    p.up_x = (int)up_x; p.up_y = (int)up_y; p.down_x = (int)down_x; p.down_y = (int)down_y;
    p.pad_x0 = (int)pad_x0; p.pad_y0 = (int)pad_y0;
    p.f_h = (int)f_h; p.f_w = (int)f_w;
    p.separable = f.dim() == 1;
    p.flip = flip_filter;
    p.gain = gain;
    check_launch(stylenas::launch_upfirdn2d(dtype_of(x), x.data_ptr(), f.data_ptr(), y.data_ptr(), p,
                                            current_stream()), "upfirdn2d");
    return y;
}

// order 0: clamp(gain * act(x + b)); order 1: dy * gain * act'(x + b) * mask; order 2: the same with act''.
torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, int64_t dim, int64_t act,
                       int64_t order, double alpha, double gain, double clamp) {
    TORCH_CHECK(SN_ON_KERNEL_DEVICE(x), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(0 <= dim && dim < std::max<int64_t>(x.dim(), 1), "bias_act: dim out of range");
    TORCH_CHECK(order >= 0 && order <= 2, "bias_act: order must be 0, 1 or 2");
    SN_DEVICE_GUARD(x);
    x = x.contiguous();
    const bool has_bias = b.numel() > 0;
    if (has_bias) {
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type() && b.dim() == 1 &&
                    b.size(0) == x.size(dim), "bias_act: b must be 1-D, of size x.shape[dim], like x");
        b = b.contiguous();
    }
    if (order > 0) {
        TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type() && dy.device() == x.device(),
                    "bias_act: dy must match x");
        dy = dy.contiguous();
    }
    auto out = kernel_buffer(x.sizes(), x.options());
    if (out.numel() == 0) return out;
    stylenas::BiasActParams p;
    p.numel = x.numel();
    p.inner = 1;
    for (int64_t d = dim + 1; d < x.dim(); ++d) p.inner *= x.size(d);
    p.bias_size = has_bias ? (int)b.size(0) : 0;
    p.act = (int)act; p.order = (int)order;
    p.alpha = alpha; p.gain = gain; p.clamp = clamp;
    check_launch(stylenas::launch_bias_act(dtype_of(x), x.data_ptr(), has_bias ? b.data_ptr() : nullptr,
                                           order > 0 ? dy.data_ptr() : nullptr, out.data_ptr(), p,
                                           current_stream()), "bias_act");
    return out;
}

// weight [O, I, kh, kw], styles [N, I] -> modulated (and demodulated) weight [N, O, I, kh, kw].
torch::Tensor modulate(torch::Tensor weight, torch::Tensor styles, bool demodulate, double eps) {
    TORCH_CHECK(SN_ON_KERNEL_DEVICE(weight) && weight.dim() == 4, "modulate: weight must be a 4-D CUDA tensor");
    TORCH_CHECK(styles.device() == weight.device() && styles.dim() == 2 && styles.size(1) == weight.size(1) &&
                styles.scalar_type() == weight.scalar_type(), "modulate: styles must be [N, I] like weight");
    TORCH_CHECK(styles.size(0) <= 65535, "modulate: batch above 65535 is not supported by the kernel");
    SN_DEVICE_GUARD(weight);
    weight = weight.contiguous();
    styles = styles.contiguous();
    const int64_t n = styles.size(0), o = weight.size(0), i = weight.size(1);
    auto out = kernel_buffer({n, o, i, weight.size(2), weight.size(3)}, weight.options());
    if (out.numel() == 0) return out;
    stylenas::ModulateParams p;
    p.batch = (int)n; p.out_ch = (int)o; p.in_ch = (int)i;
    p.taps = (int)(weight.size(2) * weight.size(3));
    p.demodulate = demodulate; p.eps = eps;
    check_launch(stylenas::launch_modulate(dtype_of(weight), weight.data_ptr(), styles.data_ptr(), out.data_ptr(),
                                           p, current_stream()), "modulate");
    return out;
}

// a [B, n, n] float64, lower triangle read -> eigenvalues [B, n], ascending.
torch::Tensor eigvalsh(torch::Tensor a) {
    TORCH_CHECK(SN_ON_KERNEL_DEVICE(a) && a.dim() == 3 && a.size(1) == a.size(2),
                "eigvalsh: a must be a [B, n, n] CUDA tensor");
    TORCH_CHECK(a.scalar_type() == torch::kFloat64, "eigvalsh: a must be float64");
    TORCH_CHECK(a.size(0) <= 65535 && a.size(1) <= 46340, "eigvalsh: at most 65535 matrices of size 46340");
    SN_DEVICE_GUARD(a);
    a = a.contiguous();
    auto eig = kernel_buffer({a.size(0), a.size(1)}, a.options());
    if (eig.numel() == 0) return eig;
    stylenas::EigvalshParams p;
    p.batch = (int)a.size(0);
    p.n = (int)a.size(1);
    auto workspace = kernel_buffer({stylenas::eigvalsh_workspace_size(p)}, a.options());
    check_launch(stylenas::launch_eigvalsh(a.data_ptr<double>(), eig.data_ptr<double>(),
                                           workspace.data_ptr<double>(), p, current_stream()), "eigvalsh");
    return eig;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "StyleNAS CUDA kernels (upfirdn2d, bias_act, modulate, eigvalsh)";
    m.def("upfirdn2d", &upfirdn2d, "fused upsample, FIR filter, downsample");
    m.def("bias_act", &bias_act, "fused bias, activation, gain and clamp, with derivatives");
    m.def("modulate", &modulate, "StyleGAN2 weight modulation and demodulation coefficients");
    m.def("eigvalsh", &eigvalsh, "eigenvalues of a batch of symmetric float64 matrices");
#ifdef STYLENAS_EMULATE
    m.def("set_reverse_thread_order", [](bool reverse) { stylenas::emulation::reverse_thread_order = reverse; },
          "host emulation: let the threads of a block take turns in reverse index order");
#endif
}
