// Activation functions of bias_act and their first two derivatives (the per-element work of
// bias_act.cu). Conventions follow torch's own functions: relu'(0) = 0,
// lrelu'(0) = alpha, softplus is linear above 20.
#pragma once
#include <cmath>
#include "common.h"

namespace stylenas {

#ifndef __CUDACC__
// nvcc provides float overloads of these in the global namespace; a host compiler has them in std.
using std::exp;
using std::log1p;
using std::tanh;
#endif

enum Act : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

template <typename A> SN_HD A sigmoid_of(A z) { return A(1) / (A(1) + exp(-z)); }

// order 0: act(z); 1: act'(z); 2: act''(z)
template <typename A>
SN_HD A act_derivative(int act, int order, A z, A alpha) {
    const A selu_alpha = A(1.6732632423543772848170429916717);
    const A selu_scale = A(1.0507009873554804934193349852946);
    switch (act) {
    case kLinear: return order == 0 ? z : (order == 1 ? A(1) : A(0));
    case kRelu:   return order == 0 ? (z > A(0) ? z : A(0)) : (order == 1 ? (z > A(0) ? A(1) : A(0)) : A(0));
    case kLrelu:  return order == 0 ? (z > A(0) ? z : z * alpha) : (order == 1 ? (z > A(0) ? A(1) : alpha) : A(0));
    case kTanh: {
        A t = tanh(z);
        return order == 0 ? t : (order == 1 ? A(1) - t * t : A(-2) * t * (A(1) - t * t));
    }
    case kSigmoid: {
        A s = sigmoid_of(z);
        return order == 0 ? s : (order == 1 ? s * (A(1) - s) : s * (A(1) - s) * (A(1) - A(2) * s));
    }
    case kElu: {
        if (z > A(0)) return order == 0 ? z : (order == 1 ? A(1) : A(0));
        A e = alpha * exp(z);
        return order == 0 ? e - alpha : e;
    }
    case kSelu: {
        if (z > A(0)) return order == 0 ? selu_scale * z : (order == 1 ? selu_scale : A(0));
        A e = selu_scale * selu_alpha * exp(z);
        return order == 0 ? e - selu_scale * selu_alpha : e;
    }
    case kSoftplus: {
        if (z > A(20)) return order == 0 ? z : (order == 1 ? A(1) : A(0));
        if (order == 0) return log1p(exp(z));
        A s = sigmoid_of(z);
        return order == 1 ? s : s * (A(1) - s);
    }
    case kSwish: {
        A s = sigmoid_of(z);
        if (order == 0) return z * s;
        if (order == 1) return s * (A(1) + z * (A(1) - s));
        return s * (A(1) - s) * (A(2) + z * (A(1) - A(2) * s));
    }
    }
    return A(0);
}

// order 0: clamp(gain * act(z)); order 1: dy * gain * act'(z) * [not clamped];
// order 2: dy * gain * act''(z) * [not clamped]. `z` is x + bias.
template <typename A>
SN_HD A bias_act_point(A z, A dy, const BiasActParams& p) {
    const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
    const A y = gain * act_derivative<A>(p.act, 0, z, alpha);
    if (p.order == 0) {
        if (p.clamp >= 0) return y > clamp ? clamp : (y < -clamp ? -clamp : y);
        return y;
    }
    // torch's clamp passes the gradient where -clamp <= y <= clamp.
    if (p.clamp >= 0 && (y > clamp || y < -clamp)) return A(0);
    return dy * gain * act_derivative<A>(p.act, p.order, z, alpha);
}

}  // namespace stylenas
