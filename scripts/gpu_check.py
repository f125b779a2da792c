"""One GPU, a few minutes: CUDA tests, kernel self-checks, the benchmarks, a 256 px search and retraining; one JSON. Same as `stylenas gpu-check`."""
import sys

from stylenas.gpucheck import gpu_check_command as main

if __name__ == "__main__":
    sys.exit(main())
