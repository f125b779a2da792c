// Host emulation of the CUDA execution model, compiled in only with -DSTYLENAS_EMULATE (g++, no
// GPU), so the tests can run the real kernels, launchers and bindings on CPU tensors.
//
// A launch runs its blocks one after another on the calling thread; the CUDA threads of a block
// are fibers (ucontext) that run in turn until they reach __syncthreads() or return:
//   - __syncthreads() is a barrier over the block's live threads (a thread that returned early no
//     longer counts, as on Volta and later GPUs): no thread passes it before all have arrived;
//   - threadIdx/blockIdx/blockDim/gridDim are set by the scheduler before each fiber runs;
//   - static __shared__ arrays are function statics and dynamic shared memory is one buffer per
//     launch (filled with NaN bytes before each block): both are shared by the threads of a
//     block, and blocks never overlap in time;
//   - a bad launch configuration is reported by cudaGetLastError's stand-in, as on a GPU;
//   - the threads of a block take turns in index order, or in reverse (reverse_thread_order).
// It is slow and sees no races between blocks or inside warps, but it executes the index
// arithmetic, the reductions and every synchronisation point of the kernels as written.
#pragma once
#include <ucontext.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include <cuda_runtime.h>  // dim3, uint3 (host-usable; nothing from libcudart is called)

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace stylenas::emulation {

inline thread_local uint3 thread_index{0, 0, 0};
inline thread_local uint3 block_index{0, 0, 0};
inline thread_local dim3 block_dim, grid_dim;
inline thread_local unsigned char* dynamic_shared = nullptr;
inline thread_local const char* pending_error = nullptr;
// The order in which the threads of a block take turns between barriers. A kernel that reads
// another thread's write without a barrier in between gets a different answer in one of the
// two orders, so the tests run the kernels both ways.
inline bool reverse_thread_order = false;

struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    uint3 index;
    bool done;
};

constexpr size_t kFiberStack = 64 * 1024;

struct Scheduler {
    ucontext_t context;               // where a fiber goes at __syncthreads() or when it returns
    // Kept between launches, at fixed addresses: a ucontext_t points into itself (its saved
    // floating-point state), so it must never move once getcontext has filled it.
    std::vector<std::unique_ptr<Fiber>> fibers;
    Fiber* current = nullptr;
    void (*invoke)(const void*) = nullptr;
    const void* body = nullptr;
};
inline thread_local Scheduler scheduler;

inline void syncthreads() { swapcontext(&scheduler.current->context, &scheduler.context); }

inline void fiber_entry() {
    scheduler.invoke(scheduler.body);
    scheduler.current->done = true;  // returning resumes the scheduler (uc_link)
}

inline const char* take_error() {
    const char* error = pending_error;
    pending_error = nullptr;
    return error;
}

template <typename Body>
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const Body& body) {
    const unsigned threads = block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || grid.y > 65535 ||
        grid.z > 65535 || shared_bytes > 48 * 1024) {
        pending_error = "invalid configuration argument";
        return;
    }
    // Exactly the bytes asked for (operator new aligns them for any type), so that a sanitizer
    // build sees a kernel that overruns its dynamic shared memory.
    std::unique_ptr<unsigned char[]> shared(new unsigned char[shared_bytes > 0 ? shared_bytes : 1]);
    block_dim = block;
    grid_dim = grid;
    dynamic_shared = shared.get();
    scheduler.invoke = [](const void* b) { (*static_cast<const Body*>(b))(); };
    scheduler.body = &body;
    auto& fibers = scheduler.fibers;
    while (fibers.size() < threads) {
        auto fiber = std::make_unique<Fiber>();
        fiber->stack.reset(new char[kFiberStack]);
        getcontext(&fiber->context);  // once: makecontext below only re-aims it
        fibers.push_back(std::move(fiber));
    }
    for (unsigned t = 0; t < threads; ++t)
        fibers[t]->index = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_index = uint3{x, y, z};
                // Shared memory starts as garbage on a GPU: NaN bytes make a read-before-write show.
                std::memset(dynamic_shared, 0xFF, shared_bytes);
                for (unsigned t = 0; t < threads; ++t) {
                    Fiber& f = *fibers[t];
                    f.context.uc_stack.ss_sp = f.stack.get();
                    f.context.uc_stack.ss_size = kFiberStack;
                    f.context.uc_link = &scheduler.context;
                    makecontext(&f.context, fiber_entry, 0);
                    f.done = false;
                }
                // Each round runs every live thread up to its next barrier (or its end).
                for (bool live = true; live;) {
                    live = false;
                    for (unsigned k = 0; k < threads; ++k) {
                        Fiber& f = *fibers[reverse_thread_order ? threads - 1 - k : k];
                        if (f.done) continue;
                        scheduler.current = &f;
                        thread_index = f.index;
                        swapcontext(&scheduler.context, &f.context);
                        live = live || !f.done;
                    }
                }
            }
    dynamic_shared = nullptr;
}

// launch(kernel, grid, block, shared)(args...) stands for kernel<<<grid, block, shared>>>(args...).
template <typename... Params>
struct Launch {
    void (*kernel)(Params...);
    dim3 grid, block;
    size_t shared_bytes;
    template <typename... Args>
    void operator()(Args... args) const {
        auto* kernel_fn = kernel;
        run_grid(grid, block, shared_bytes, [&] { kernel_fn(Params(args)...); });
    }
};

template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes) {
    return Launch<Params...>{kernel, grid, block, shared_bytes};
}

template <typename T>
T atomic_add(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

}  // namespace stylenas::emulation

#define threadIdx (::stylenas::emulation::thread_index)
#define blockIdx (::stylenas::emulation::block_index)
#define blockDim (::stylenas::emulation::block_dim)
#define gridDim (::stylenas::emulation::grid_dim)
#define __syncthreads() ::stylenas::emulation::syncthreads()
#define atomicAdd(address, value) ::stylenas::emulation::atomic_add(address, value)
