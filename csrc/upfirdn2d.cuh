// One output sample of upfirdn2d (the per-thread work of upfirdn2d.cu).
#pragma once
#include "common.h"

namespace stylenas {

SN_HD int positive_mod(int a, int b) { int m = a % b; return m < 0 ? m + b : m; }

// y[plane, oy, ox] = sum_{ty, tx} f[ty, tx] * z[oy * down_y + ty - pad_y0, ox * down_x + tx - pad_x0]
// where z is x with up-1 zeros inserted after every sample (z[i] = x[i / up] when up divides i).
// Only the taps landing on non-zero samples of z are visited (polyphase form). Non-zero template
// arguments fix up/down/filter size at compile time (the common StyleGAN2 cases), so the index
// arithmetic folds and the tap loops unroll; 0 takes the value from p.
template <int UP_X, int UP_Y, int DOWN_X, int DOWN_Y, int F_H, int F_W, typename Acc, typename T, typename LoadT>
SN_HD Acc upfirdn2d_point(const T* x_plane, const Acc* f, const Upfirdn2dParams& p, int oy, int ox, LoadT load) {
    const int up_x = UP_X ? UP_X : p.up_x, up_y = UP_Y ? UP_Y : p.up_y;
    const int down_x = DOWN_X ? DOWN_X : p.down_x, down_y = DOWN_Y ? DOWN_Y : p.down_y;
    const int f_h = F_H ? F_H : p.f_h, f_w = F_W ? F_W : p.f_w;
    const int sy = oy * down_y - p.pad_y0;
    const int sx = ox * down_x - p.pad_x0;
    const int ty0 = positive_mod(-sy, up_y);
    const int tx0 = positive_mod(-sx, up_x);
    Acc sum = 0;
    int iy = (sy + ty0) / up_y;  // exact: up_y divides sy + ty0
#pragma unroll
    for (int ty = ty0; ty < f_h; ty += up_y, ++iy) {
        if (iy < 0 || iy >= p.in_h) continue;
        int ix = (sx + tx0) / up_x;
#pragma unroll
        for (int tx = tx0; tx < f_w; tx += up_x, ++ix) {
            if (ix < 0 || ix >= p.in_w) continue;
            sum += f[ty * f_w + tx] * load(x_plane[(int64_t)iy * p.in_w + ix]);
        }
    }
    return sum;
}

}  // namespace stylenas
