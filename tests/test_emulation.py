"""The host emulation of CUDA (csrc/emulation.h) that the kernel tests rely on: its barrier,
shared-memory and launch semantics on small probe kernels, and every kernel's self-check with
the threads of a block taking turns in both orders (a missing barrier shows in one of them)."""
import subprocess
from pathlib import Path

import pytest
import torch

from stylenas.ops import extension

PROBE = r"""
#include <cstdio>
#include <cmath>
#include "dtypes.cuh"

using namespace stylenas;

// Tree sum over the block; `barrier` false drops the barrier between the steps (a bug).
__global__ void block_sum(const float* in, float* out, bool barrier) {
    __shared__ float partial[64];
    partial[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        if (barrier) __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// Half of the threads return at once; the others still meet at two barriers.
__global__ void early_exit(int* out) {
    __shared__ int count[1];
    if (threadIdx.x == 0) count[0] = 0;
    __syncthreads();
    if (threadIdx.x % 2) return;
    atomicAdd(&count[0], 1);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = count[0];
}

__global__ void read_dynamic_shared(float* out) {
    SN_DYNAMIC_SHARED(float, buffer);
    out[threadIdx.x] = buffer[threadIdx.x];
}

__global__ void indices(int* out) {
    const int block = blockIdx.y * gridDim.x + blockIdx.x;
    const int thread = threadIdx.y * blockDim.x + threadIdx.x;
    out[block * blockDim.x * blockDim.y + thread] = block * 1000 + thread;
}

int main() {
    float in[128], sums[2];
    for (int i = 0; i < 128; ++i) in[i] = (float)(i % 7);
    for (int order = 0; order < 2; ++order) {
        emulation::reverse_thread_order = order == 1;
        for (int barrier = 1; barrier >= 0; --barrier) {
            SN_LAUNCH(block_sum, 2, 64, 0, nullptr)(in, sums, barrier == 1);
            printf("sum/order=%d/barrier=%d %g %g\n", order, barrier, sums[0], sums[1]);
        }
        int counts[3];
        SN_LAUNCH(early_exit, 3, 32, 0, nullptr)(counts);
        printf("early_exit/order=%d %d %d %d\n", order, counts[0], counts[1], counts[2]);
    }
    float shared_values[4];
    SN_LAUNCH(read_dynamic_shared, 1, 4, 4 * sizeof(float), nullptr)(shared_values);
    printf("dynamic_shared_nan %d\n", (int)(std::isnan(shared_values[0]) && std::isnan(shared_values[3])));
    int ids[2 * 3 * 2 * 4];
    SN_LAUNCH(indices, dim3(2, 3), dim3(2, 4), 0, nullptr)(ids);
    int ok = 1;
    for (int b = 0; b < 6; ++b)
        for (int t = 0; t < 8; ++t) ok &= ids[b * 8 + t] == b * 1000 + t;
    printf("indices %d\n", ok);
    SN_LAUNCH(indices, 1, 2048, 0, nullptr)(ids);
    const char* error = last_error();
    printf("too_many_threads %s\n", error ? error : "none");
    printf("error_cleared %d\n", (int)(last_error() == nullptr));
    return 0;
}
"""


def compile_emulated(compiler_and_include, source, binary, *flags):
    """A standalone program over csrc/ and its host emulation."""
    compiler, include = compiler_and_include
    subprocess.run([compiler, "-std=c++20", "-O1", *flags, "-DSTYLENAS_EMULATE", f"-I{extension.source_dir()}",
                    f"-I{include}", str(source), "-o", str(binary)], check=True)


def assert_self_checks_pass(*context):
    for op in sorted(extension._self_checks):
        ok, error = extension.run_self_check(op, torch.device("cpu"))
        assert ok, (op, *context, error)


@pytest.fixture(scope="module")
def probe_output(emulation_compiler, tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.cpp").write_text(PROBE)
    compile_emulated(emulation_compiler, folder / "probe.cpp", folder / "probe")
    run = subprocess.run([str(folder / "probe")], check=True, capture_output=True, text=True, timeout=60)
    return dict(line.split(" ", 1) for line in run.stdout.splitlines())


def test_barriers_order_the_threads_of_a_block(probe_output):
    expected = f"{sum(i % 7 for i in range(64)):g} {sum(i % 7 for i in range(64, 128)):g}"
    for order in (0, 1):
        assert probe_output[f"sum/order={order}/barrier=1"] == expected
    # without the barriers the tree sum reads values before they are written in one order
    wrong = [probe_output[f"sum/order={order}/barrier=0"] != expected for order in (0, 1)]
    assert any(wrong)


def test_threads_that_return_early_leave_the_barrier(probe_output):
    for order in (0, 1):
        assert probe_output[f"early_exit/order={order}"] == "16 16 16"


def test_launch_semantics(probe_output):
    assert probe_output["dynamic_shared_nan"] == "1"  # shared memory starts as garbage
    assert probe_output["indices"] == "1"  # 2-D grids and blocks, thread and block indices
    assert probe_output["too_many_threads"] == "invalid configuration argument"
    assert probe_output["error_cleared"] == "1"


def test_self_checks_ignore_autocast_and_no_grad(emulated_extension):
    extension.activate_emulation()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            assert_self_checks_pass("autocast")
    finally:
        extension.reset()


def test_self_checks_pass_in_both_thread_orders(emulated_extension):
    module = extension.activate_emulation()
    try:
        for reverse in (False, True):
            module.set_reverse_thread_order(reverse)
            assert_self_checks_pass(f"reverse={reverse}")
    finally:
        module.set_reverse_thread_order(False)
        extension.reset()


def test_kernels_stay_inside_their_buffers(emulation_compiler, tmp_path):
    """tests/kernel_memcheck.cpp: every launcher over a sweep of shapes on exact-size buffers, built
    with AddressSanitizer and UndefinedBehaviorSanitizer (out-of-bounds global or shared memory
    aborts with a report), like compute-sanitizer's memcheck on a GPU."""
    binary = tmp_path / "kernel_memcheck"
    compile_emulated(emulation_compiler, Path(__file__).with_name("kernel_memcheck.cpp"), binary,
                     "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("memcheck ok")
