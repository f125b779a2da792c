// One output sample of upfirdn2d (the per-thread work of upfirdn2d.cu).
#pragma once
#include "common.h"

namespace stylenas {

SN_HD int positive_mod(int a, int b) { int m = a % b; return m < 0 ? m + b : m; }

// y[plane, oy, ox] = sum_{ty, tx} f[ty, tx] * z[oy * down_y + ty - pad_y0, ox * down_x + tx - pad_x0]
// where z is x with up-1 zeros inserted after every sample (z[i] = x[i / up] when up divides i).
// Only the taps landing on non-zero samples of z are visited (polyphase form).
template <typename Acc, typename T, typename LoadT>
SN_HD Acc upfirdn2d_point(const T* x_plane, const Acc* f, const Upfirdn2dParams& p,
                          int oy, int ox, LoadT load) {
    const int sy = oy * p.down_y - p.pad_y0;
    const int sx = ox * p.down_x - p.pad_x0;
    const int ty0 = positive_mod(-sy, p.up_y);
    const int tx0 = positive_mod(-sx, p.up_x);
    Acc sum = 0;
    int iy = (sy + ty0) / p.up_y;  // exact: up_y divides sy + ty0
    for (int ty = ty0; ty < p.f_h; ty += p.up_y, ++iy) {
        if (iy < 0 || iy >= p.in_h) continue;
        int ix = (sx + tx0) / p.up_x;
        for (int tx = tx0; tx < p.f_w; tx += p.up_x, ++ix) {
            if (ix < 0 || ix >= p.in_w) continue;
            sum += f[ty * p.f_w + tx] * load(x_plane[(int64_t)iy * p.in_w + ix]);
        }
    }
    return sum;
}

}  // namespace stylenas
