// Eigenvalues of a batch of symmetric float64 matrices, for the trace of the matrix square root
// in the Frechet distance (FID): sum_i sqrt(lambda_i(R^T S R)).
//
// Householder tridiagonalisation (LAPACK's unblocked dsytd2, lower), all B matrices advancing
// one column per step, then each eigenvalue of the tridiagonal matrix by bisection on its
// Sturm count (LAPACK's dstebz idea), one thread per eigenvalue. Step j, with A22 the trailing
// m x m block (m = n - j - 1) and x the column under the diagonal:
//   householder:    v, tau, beta with (I - tau v v^T) x = beta e_1       (one block per matrix)
//   symv_partial:   partial sums of p = tau A22 v over row chunks        (a tile grid)
//   update_vector:  p, then w = p - (tau / 2)(p . v) v                    (one block per matrix)
//   rank2_update:   A22 -= v w^T + w v^T                                  (a grid over A22)
// The matrix is kept in full (both triangles updated) in a workspace copy, so the reads of
// symv_partial are coalesced columns and x is a contiguous row. Partial sums are reduced in a
// fixed order: the result does not depend on scheduling.
#include <cfloat>
#include "dtypes.cuh"

namespace stylenas {

constexpr int kEigThreads = 256;   // a power of two (tree reductions)
constexpr int kSymvRows = 64;      // rows of A22 per symv_partial block
constexpr int kRank2Blocks = 1024; // cap of the rank-2 update's grid (rows) per matrix

struct EigWorkspace {
    double* a;        // [B, n, n] the symmetric matrix being reduced
    double* v;        // [B, n] Householder vector (v[0] = 1)
    double* w;        // [B, n] p, then w
    double* partial;  // [B, chunks, n] partial sums of A22 v
    double* tau;      // [B]
    double* tri;      // [B, n, 2] (d_i, e_i^2) of the tridiagonal matrix
};

SN_HD int symv_chunks(int n) { return (n + kSymvRows - 1) / kSymvRows; }

inline EigWorkspace carve_workspace(double* base, const EigvalshParams& p) {
    const int64_t b = p.batch, n = p.n;
    EigWorkspace ws;
    ws.a = base;
    ws.v = ws.a + b * n * n;
    ws.w = ws.v + b * n;
    ws.partial = ws.w + b * n;
    ws.tau = ws.partial + b * symv_chunks(p.n) * n;
    ws.tri = ws.tau + b;
    return ws;
}

int64_t eigvalsh_workspace_size(const EigvalshParams& p) {
    const int64_t b = p.batch, n = p.n;
    return b * n * n + 2 * b * n + b * symv_chunks(p.n) * n + b + 2 * b * n;
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

// The full symmetric matrix from the lower triangle of the input.
__global__ void symmetrize_kernel(const double* __restrict__ in, double* __restrict__ a, int n) {
    const int64_t plane = (int64_t)n * n;
    const double* src = in + blockIdx.y * plane;
    double* dst = a + blockIdx.y * plane;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < plane;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = idx / n, c = idx - r * n;
        dst[idx] = r >= c ? src[idx] : src[c * n + r];
    }
}

// Householder reflector of column j: H x = beta e_1 with H = I - tau v v^T, v[0] = 1. The
// subdiagonal entry becomes beta (that is e_j of the tridiagonal matrix).
__global__ void householder_kernel(EigWorkspace ws, int n, int j) {
    __shared__ double scratch[kEigThreads];
    __shared__ double scale;
    const int b = blockIdx.x, m = n - j - 1;
    double* a = ws.a + (int64_t)b * n * n;
    const double* x = a + (int64_t)j * n + j + 1;  // row j right of the diagonal = column j below it
    double* v = ws.v + (int64_t)b * n;
    double squares = 0;
    for (int k = 1 + threadIdx.x; k < m; k += blockDim.x) squares += x[k] * x[k];
    const double xnorm = sqrt(block_sum(squares, scratch));
    if (threadIdx.x == 0) {
        const double alpha = x[0];
        double tau = 0, beta = alpha, s = 0;
        if (xnorm > 0) {
            beta = -copysign(hypot(alpha, xnorm), alpha);
            tau = (beta - alpha) / beta;
            s = 1 / (alpha - beta);
        }
        ws.tau[b] = tau;
        scale = s;
        v[0] = 1;
        a[(int64_t)(j + 1) * n + j] = beta;
    }
    __syncthreads();
    for (int k = 1 + threadIdx.x; k < m; k += blockDim.x) v[k] = x[k] * scale;
}

// partial[b, chunk, i] = sum over the chunk's rows r of A22[r, i] v[r] (= (A22 v)_i by symmetry).
__global__ void symv_partial_kernel(EigWorkspace ws, int n, int j) {
    __shared__ double v_chunk[kSymvRows];
    const int b = blockIdx.z, m = n - j - 1;
    const int r0 = blockIdx.y * kSymvRows;
    const int rows = m - r0 < kSymvRows ? m - r0 : kSymvRows;
    const double* v = ws.v + (int64_t)b * n;
    for (int k = threadIdx.x; k < rows; k += blockDim.x) v_chunk[k] = v[r0 + k];
    __syncthreads();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < m) {
        const double* column = ws.a + (int64_t)b * n * n + (int64_t)(j + 1 + r0) * n + (j + 1 + i);
        double sum = 0;
        for (int k = 0; k < rows; ++k) sum += column[(int64_t)k * n] * v_chunk[k];
        ws.partial[((int64_t)b * symv_chunks(n) + blockIdx.y) * n + i] = sum;
    }
}

// p = tau * sum of the partial sums; w = p - (tau / 2) (p . v) v.
__global__ void update_vector_kernel(EigWorkspace ws, int n, int j) {
    __shared__ double scratch[kEigThreads];
    const int b = blockIdx.x, m = n - j - 1;
    const int chunks = (m + kSymvRows - 1) / kSymvRows;
    const double tau = ws.tau[b];
    const double* v = ws.v + (int64_t)b * n;
    const double* partial = ws.partial + (int64_t)b * symv_chunks(n) * n;
    double* w = ws.w + (int64_t)b * n;
    double dot = 0;
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        double p = 0;
        for (int c = 0; c < chunks; ++c) p += partial[(int64_t)c * n + i];
        p *= tau;
        w[i] = p;
        dot += p * v[i];
    }
    const double coef = 0.5 * tau * block_sum(dot, scratch);
    for (int i = threadIdx.x; i < m; i += blockDim.x) w[i] -= coef * v[i];  // each thread its own i's
}

// A22 -= v w^T + w v^T over the whole block (both triangles): a block per row (grid-stride),
// its threads along the row, so the accesses are coalesced and need no index division.
__global__ void rank2_update_kernel(EigWorkspace ws, int n, int j) {
    const int b = blockIdx.y, m = n - j - 1;
    const double* v = ws.v + (int64_t)b * n;
    const double* w = ws.w + (int64_t)b * n;
    double* a = ws.a + (int64_t)b * n * n + (int64_t)(j + 1) * n + (j + 1);
    for (int r = blockIdx.x; r < m; r += gridDim.x) {
        const double vr = v[r], wr = w[r];
        double* row = a + (int64_t)r * n;
        for (int c = threadIdx.x; c < m; c += blockDim.x) row[c] -= vr * w[c] + wr * v[c];
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
    const int64_t plane = (int64_t)n * n;
    SN_LAUNCH(symmetrize_kernel, dim3(grid_size(plane, kEigThreads), batch), kEigThreads, 0, stream)(a, ws.a, n);
    for (int j = 0; j + 2 < n; ++j) {
        const int m = n - j - 1;
        const unsigned int column_blocks = (m + kEigThreads - 1) / kEigThreads;
        const unsigned int row_chunks = (m + kSymvRows - 1) / kSymvRows;
        const unsigned int update_blocks = m < kRank2Blocks ? m : kRank2Blocks;
        SN_LAUNCH(householder_kernel, batch, kEigThreads, 0, stream)(ws, n, j);
        SN_LAUNCH(symv_partial_kernel, dim3(column_blocks, row_chunks, batch), kEigThreads, 0, stream)(ws, n, j);
        SN_LAUNCH(update_vector_kernel, batch, kEigThreads, 0, stream)(ws, n, j);
        SN_LAUNCH(rank2_update_kernel, dim3(update_blocks, batch), kEigThreads, 0, stream)(ws, n, j);
    }
    SN_LAUNCH(tridiagonal_kernel, dim3(grid_size(n, kEigThreads), batch), kEigThreads, 0, stream)(ws, n);
    SN_LAUNCH(bisect_kernel, dim3(grid_size(n, kEigThreads), batch), kEigThreads, 0, stream)(ws, eig, n);
    return last_error();
}

}  // namespace stylenas
