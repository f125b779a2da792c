// Eigenvalues of a batch of symmetric float64 matrices, for the trace of the matrix square root
// in the Frechet distance (FID): sum_i sqrt(lambda_i(R^T S R)).
//
// Householder tridiagonalisation (the reflectors of LAPACK's dsytd2, lower), all B matrices
// advancing one column per step, then each eigenvalue of the tridiagonal matrix by bisection on
// its Sturm count (LAPACK's dstebz idea), one thread per eigenvalue. Step j reduces column j
// with H = I - tau v v^T and updates the trailing block A22 = A[j+1:, j+1:] to H A22 H:
//   p = tau A22 v,   w = p - (tau / 2)(p . v) v,   A22 -= v w^T + w v^T.
// The trailing block dominates the cost, and it is memory-bound, so each step touches it once:
// the kernel that applies step j's rank-2 update also multiplies the updated block by step
// j + 1's reflector, whose column it needs first; that column is cheap to update on its own.
// Only the lower triangle is read or written. Two launches per step:
//   reflector(j):      one block per matrix: p_j from the partial sums, then w_j; then the
//                      column j+1 after step j's update -> its reflector v, tau, beta
//   update_symv(j):    A22 -= v w^T + w v^T on 64 x 64 tiles of the lower triangle, and the
//                      tiles' row and column sums of A22' v_{j+1} as partial sums
// Partial sums are reduced in a fixed order: the result does not depend on scheduling.
#include <cfloat>
#include "dtypes.cuh"

namespace stylenas {

constexpr int kEigThreads = 256;  // a power of two (tree reductions)
constexpr int kTile = 64;         // tile edge of update_symv; 256 threads = 64 columns x 4 row groups

struct EigWorkspace {
    double* a;        // [B, n, n] the matrix being reduced (lower triangle)
    double* v;        // [B, 2, n] the reflectors of steps j and j + 1 (by parity), indexed by row
    double* w;        // [B, n] p_j, then w_j, indexed by row
    double* partial;  // [B, tiles, n] partial sums of A22 v, one slot per tile row/column
    double* tau;      // [B, 2] by parity
    double* tri;      // [B, n, 2] (d_i, e_i^2) of the tridiagonal matrix
};

SN_HD int tile_count(int n) { return (n + kTile - 1) / kTile; }

inline EigWorkspace carve_workspace(double* base, const EigvalshParams& p) {
    const int64_t b = p.batch, n = p.n;
    EigWorkspace ws;
    ws.a = base;
    ws.v = ws.a + b * n * n;
    ws.w = ws.v + 2 * b * n;
    ws.partial = ws.w + b * n;
    ws.tau = ws.partial + b * tile_count(p.n) * n;
    ws.tri = ws.tau + 2 * b;
    return ws;
}

int64_t eigvalsh_workspace_size(const EigvalshParams& p) {
    const int64_t b = p.batch, n = p.n;
    return b * n * n + 3 * b * n + b * tile_count(p.n) * n + 2 * b + 2 * b * n;
}

__device__ __forceinline__ double* reflector(const EigWorkspace& ws, int b, int n, int step) {
    return ws.v + ((int64_t)b * 2 + (step & 1)) * n;
}

// Sum over the block of one value per thread; every thread gets the result.
__device__ double block_sum(double value, double* scratch) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) scratch[threadIdx.x] += scratch[threadIdx.x + stride];
        __syncthreads();
    }
    const double total = scratch[0];
    __syncthreads();  // scratch may be reused right after
    return total;
}

__global__ void copy_kernel(const double* __restrict__ in, double* __restrict__ out, int64_t count) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = in[i];
}

// Reflector of column j: H x = beta e_1 with H = I - tau v v^T, v[j + 1] = 1, where x is the
// column below the diagonal after step j - 1's update (applied here: the update kernel of step
// j - 1 leaves this column alone). Its subdiagonal entry becomes beta, e_j of the tridiagonal.
__device__ void householder(const EigWorkspace& ws, int n, int j, double* scratch, double* scale_shared) {
    double& scale = *scale_shared;
    const int b = blockIdx.x;
    double* a = ws.a + (int64_t)b * n * n;
    double* v = reflector(ws, b, n, j);
    const double* v_prev = reflector(ws, b, n, j - 1);
    const double* w_prev = ws.w + (int64_t)b * n;
    const double vj = j > 0 ? v_prev[j] : 0.0, wj = j > 0 ? w_prev[j] : 0.0;
    // x_r = A[r][j] - v_prev[r] w_prev[j] - w_prev[r] v_prev[j] (no previous step for j = 0)
    auto column = [&](int r) { return a[(int64_t)r * n + j] - (j > 0 ? v_prev[r] * wj + w_prev[r] * vj : 0.0); };
    double squares = 0;
    for (int r = j + 2 + threadIdx.x; r < n; r += blockDim.x) {
        const double x = column(r);
        v[r] = x;
        squares += x * x;
    }
    const double xnorm = sqrt(block_sum(squares, scratch));
    if (threadIdx.x == 0) {
        const int r = j + 1;
        const double alpha = column(r);
        double tau = 0, beta = alpha, s = 0;
        if (xnorm > 0) {
            beta = -copysign(hypot(alpha, xnorm), alpha);
            tau = (beta - alpha) / beta;
            s = 1 / (alpha - beta);
        }
        ws.tau[2 * b + (j & 1)] = tau;
        scale = s;
        v[r] = 1;
        a[(int64_t)r * n + j] = beta;
    }
    __syncthreads();
    for (int r = j + 2 + threadIdx.x; r < n; r += blockDim.x) v[r] *= scale;  // each thread its own r's
}

// p_j = tau_j * (the partial sums of A22 v_j left by update_symv of step j - 1), then
// w_j = p_j - (tau_j / 2)(p_j . v_j) v_j, over rows j + 1 .. n - 1.
__device__ void update_vector(const EigWorkspace& ws, int n, int j, double* scratch) {
    const int b = blockIdx.x;
    const int first_slot = j / kTile;  // the tiles update_symv covered: rows and columns >= j
    const int slots = tile_count(n);
    const double tau = ws.tau[2 * b + (j & 1)];
    const double* v = reflector(ws, b, n, j);
    const double* partial = ws.partial + (int64_t)b * slots * n;
    double* w = ws.w + (int64_t)b * n;
    double dot = 0;
    for (int i = j + 1 + threadIdx.x; i < n; i += blockDim.x) {
        double p = 0;
        for (int k = first_slot; k < slots; ++k) p += partial[(int64_t)k * n + i];
        p *= tau;
        w[i] = p;
        dot += p * v[i];
    }
    const double coef = 0.5 * tau * block_sum(dot, scratch);
    for (int i = j + 1 + threadIdx.x; i < n; i += blockDim.x) w[i] -= coef * v[i];  // each thread its own i's
}

// The per-matrix work between two passes over the trailing block, one block per matrix:
// w_j (when j >= 0), then the reflector of column j + 1 (when that step exists).
__global__ void reflector_kernel(EigWorkspace ws, int n, int j) {
    __shared__ double scratch[kEigThreads];
    __shared__ double scale;
    if (j >= 0) update_vector(ws, n, j, scratch);
    if (j + 3 < n) {  // step j + 1 exists
        __syncthreads();  // householder reads all of w_j
        householder(ws, n, j + 1, scratch, &scale);
    }
}

// One 64 x 64 tile (R, C), R >= C, of the lower triangle of A[first:, first:] with first = j + 1:
// applies step j's update A -= v w^T + w v^T (unless `update` is false: the prologue, j = -1),
// then, when step j + 1 exists, writes the tile's share of A22' v_{j+1} over rows and columns
// >= j + 2: its row sums into slot C of rows R, its column sums into slot R of columns C (the
// transpose of an off-diagonal tile). Column j + 1 below the diagonal is left to householder
// of step j + 1, which has already used and replaced it.
__global__ void update_symv_kernel(EigWorkspace ws, int n, int j, bool update, bool has_next) {
    __shared__ double tile[kTile][kTile + 1];
    __shared__ double v_row[kTile], w_row[kTile], v_col[kTile], w_col[kTile];
    __shared__ double next_row[kTile], next_col[kTile];
    const int first = j + 1;
    const int first_tile = first / kTile;
    const int tile_r = first_tile + blockIdx.y, tile_c = first_tile + blockIdx.x;
    if (tile_r < tile_c) return;  // upper triangle: the whole block leaves before any barrier
    const int b = blockIdx.z;
    const int r0 = tile_r * kTile, c0 = tile_c * kTile;
    double* a = ws.a + (int64_t)b * n * n;
    const double* v = reflector(ws, b, n, j);
    const double* w = ws.w + (int64_t)b * n;
    const double* v_next = reflector(ws, b, n, j + 1);
    const int t = threadIdx.x;
    if (t < kTile) {
        const int r = r0 + t, c = c0 + t;
        const bool row_in = r >= first && r < n, col_in = c >= first && c < n;
        v_row[t] = update && row_in ? v[r] : 0.0;
        w_row[t] = update && row_in ? w[r] : 0.0;
        v_col[t] = update && col_in ? v[c] : 0.0;
        w_col[t] = update && col_in ? w[c] : 0.0;
        next_row[t] = has_next && r >= j + 2 && r < n ? v_next[r] : 0.0;
        next_col[t] = has_next && c >= j + 2 && c < n ? v_next[c] : 0.0;
    }
    __syncthreads();
    const int tc = t % kTile;
    const int c = c0 + tc;
    for (int tr = t / kTile; tr < kTile; tr += kEigThreads / kTile) {
        const int r = r0 + tr;
        const bool inside = r < n && c >= first && c <= r;  // r >= c >= first, so r >= first too
        double value = 0;
        if (inside) {
            double* entry = a + (int64_t)r * n + c;
            value = *entry;
            if (update) {
                value -= v_row[tr] * w_col[tc] + w_row[tr] * v_col[tc];
                if (!(has_next && c == first && r > first)) *entry = value;
            }
        }
        tile[tr][tc] = value;
    }
    if (!has_next) return;  // nothing reads the partial sums after the last step (no barrier follows)
    __syncthreads();
    const bool diagonal = tile_r == tile_c;
    if (diagonal) {  // complete the symmetric tile from its lower half
        for (int idx = t; idx < kTile * kTile; idx += kEigThreads) {
            const int tr = idx / kTile, tc2 = idx % kTile;
            if (tc2 > tr) tile[tr][tc2] = tile[tc2][tr];
        }
        __syncthreads();
    }
    double* partial = ws.partial + (int64_t)b * tile_count(n) * n;
    if (t < kTile) {  // row sums: slot tile_c of rows r0 .. r0 + 63
        double sum = 0;
        for (int k = 0; k < kTile; ++k) sum += tile[t][k] * next_col[k];
        if (r0 + t < n) partial[(int64_t)tile_c * n + r0 + t] = sum;
    } else if (!diagonal && t < 2 * kTile) {  // column sums: slot tile_r of columns c0 .. c0 + 63
        const int tc2 = t - kTile;
        double sum = 0;
        for (int k = 0; k < kTile; ++k) sum += tile[k][tc2] * next_row[k];
        if (c0 + tc2 < n) partial[(int64_t)tile_r * n + c0 + tc2] = sum;
    }
}

// (d_i, e_i^2) of the tridiagonal matrix: the diagonal and subdiagonal of the reduced matrix.
__global__ void tridiagonal_kernel(EigWorkspace ws, int n) {
    const int b = blockIdx.y;
    const double* a = ws.a + (int64_t)b * n * n;
    double* tri = ws.tri + (int64_t)b * n * 2;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const double e = i + 1 < n ? a[(int64_t)(i + 1) * n + i] : 0.0;
        tri[2 * i] = a[(int64_t)i * n + i];
        tri[2 * i + 1] = e * e;
    }
}

// Number of eigenvalues of the tridiagonal matrix below x: the negative pivots of T - x I = L D L^T.
// Pivots smaller than pivmin are replaced by -pivmin, as LAPACK does, so the count stays
// monotone in x.
__device__ int sturm_count(const double* tri, int n, double x, double pivmin) {
    int count = 0;
    double q = 1;
    for (int i = 0; i < n; ++i) {
        q = tri[2 * i] - x - (i > 0 ? tri[2 * i - 1] / q : 0.0);
        if (fabs(q) < pivmin) q = -pivmin;
        count += q < 0;
    }
    return count;
}

// Eigenvalue k (ascending) of matrix b by bisection inside the widened Gershgorin interval.
__global__ void bisect_kernel(const EigWorkspace ws, double* __restrict__ eig, int n) {
    const int b = blockIdx.y;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;  // no barrier in this kernel
    const double* tri = ws.tri + (int64_t)b * n * 2;
    double lo = DBL_MAX, hi = -DBL_MAX, e2max = 0, e_prev = 0;
    for (int i = 0; i < n; ++i) {
        const double e = sqrt(tri[2 * i + 1]);
        lo = fmin(lo, tri[2 * i] - e_prev - e);
        hi = fmax(hi, tri[2 * i] + e_prev + e);
        e2max = fmax(e2max, tri[2 * i + 1]);
        e_prev = e;
    }
    const double pivmin = DBL_MIN * fmax(1.0, e2max);
    const double tnorm = fmax(fabs(lo), fabs(hi));
    const double widen = 2.1 * (tnorm * DBL_EPSILON * n + pivmin);
    lo -= widen;
    hi += widen;
    const double atol = fmax(DBL_EPSILON * tnorm, pivmin);
    for (int iteration = 0; iteration < 256; ++iteration) {
        if (hi - lo <= fmax(atol, 2 * DBL_EPSILON * fmax(fabs(lo), fabs(hi)))) break;
        const double mid = 0.5 * (lo + hi);
        if (sturm_count(tri, n, mid, pivmin) > k)
            hi = mid;
        else
            lo = mid;
    }
    eig[(int64_t)b * n + k] = 0.5 * (lo + hi);
}

const char* launch_eigvalsh(const double* a, double* eig, double* workspace, const EigvalshParams& p,
                            void* stream_ptr) {
    cudaStream_t stream = (cudaStream_t)stream_ptr;
    const int n = p.n, batch = p.batch;
    const EigWorkspace ws = carve_workspace(workspace, p);
    const int64_t count = (int64_t)batch * n * n;
    SN_LAUNCH(copy_kernel, grid_size(count, kEigThreads), kEigThreads, 0, stream)(a, ws.a, count);
    if (n >= 3) {
        const int tiles = tile_count(n);
        // Prologue: the reflector of column 0 and the partial sums of A22 v_0.
        SN_LAUNCH(reflector_kernel, batch, kEigThreads, 0, stream)(ws, n, -1);
        SN_LAUNCH(update_symv_kernel, dim3(tiles, tiles, batch), kEigThreads, 0, stream)(ws, n, -1, false, true);
        for (int j = 0; j + 2 < n; ++j) {
            const bool has_next = j + 3 < n;
            const unsigned int span = tiles - (j + 1) / kTile;
            SN_LAUNCH(reflector_kernel, batch, kEigThreads, 0, stream)(ws, n, j);
            SN_LAUNCH(update_symv_kernel, dim3(span, span, batch), kEigThreads, 0, stream)(ws, n, j, true, has_next);
        }
    }
    SN_LAUNCH(tridiagonal_kernel, dim3(grid_size(n, kEigThreads), batch), kEigThreads, 0, stream)(ws, n);
    SN_LAUNCH(bisect_kernel, dim3(grid_size(n, kEigThreads), batch), kEigThreads, 0, stream)(ws, eig, n);
    return last_error();
}

}  // namespace stylenas
