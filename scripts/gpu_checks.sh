#!/usr/bin/env bash
# Every GPU check of the project in one command, for the GPU machine (one NVIDIA H200,
# Python 3.12 with torch 2.11 at `python3`, no network: /work/.library/device/).
#
# Before: here, in the checkout the session started in (the run tool sends that one, also
# when a helper calls it from a worktree), fill the ignored .whl/ and .gpudata/ folders:
#
#   bash scripts/gpu_wheels.sh
#
# Then one call of the run tool:
#
#   command:   bash scripts/gpu_checks.sh
#   carry:     [".whl", ".gpudata"]
#   timeout_s: 540
#
# It installs the wheels into /tmp/site, puts /tmp/site and src/ on PYTHONPATH (the package
# is not built there: no build backend without network), then runs each step under its
# own `timeout`, every log teed into $OUT. A failing step does not stop the next; the exit
# status is 1 if any step failed, timed out or was skipped. Steps, with the most seconds
# each may take (less when earlier steps ran long: the whole stays under BUDGET=500 s):
#
#   00-setup           60  nvidia-smi, versions, wheel install, carried-import smoke test
#   01-pytest         200  python3 -m pytest -m gpu tests/test_gpu.py (9 tests, one skips
#                          on a single GPU: the two-GPU dask test)
#   02-doctor          60  napari-wne doctor --seconds 2 (speed probe per device/precision)
#   03-bench_devices  200  bench_devices.py --devices cuda: every shipped 2-D model on the
#                          12 real pairs in float32, bfloat16, float16: Mvoxel/s, GFLOP/s,
#                          PSNR loss and equivariance error
#   04-bench_pipeline 200  bench_pipeline.py --devices cuda, 3 precisions, 3 rounds:
#                          zarr-to-OME-Zarr pipeline against the raw forward, 2-D and 3-D
#   05-bench_host      60  the same with --host-only: a near-empty network, so the run
#                          time is the host's work (the ceiling the GPU meets)
#
# Each step also keeps back the seconds the later ones need at the least (pytest 120,
# doctor 40, each benchmark 90, the host-only one 40). Back in $OUT (8 files): the six
# logs, summary.txt and performance.md, the docs page with the benchmarks' sections
# `bench_devices_cuda`, `bench_pipeline_cuda` and `bench_pipeline_host_cuda` replaced or
# appended (copy them into docs/performance.md).
#
# Dry runs elsewhere: PY (the Python), SITE (the install target), WHEELS (the wheel
# folder), OUT (default /tmp/gpu_checks) and BUDGET override the defaults.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self=$here/scripts/$(basename "${BASH_SOURCE[0]}")
cd "$here"
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-/tmp/gpu_checks}
BUDGET=${BUDGET:-500}
export PYTHONUNBUFFERED=1
export NAPARI_WNE_DATA=${NAPARI_WNE_DATA:-$here/.gpudata}
export PYTHONPATH="$here/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"

if [[ ${1:-} == setup ]]; then # step 00, run by the main part below
    status=0
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "no nvidia-smi"; fi
    echo "python: $("$PY" -VV 2>&1) at $(command -v "$PY"); $(nproc) cores"
    free -g | head -2
    shopt -s nullglob
    wheels=("$WHEELS"/*.whl)
    if ((${#wheels[@]} == 0)); then
        echo "FAILED: no wheels in $WHEELS (run scripts/gpu_wheels.sh, carry .whl)"
        exit 1
    fi
    echo "installing ${#wheels[@]} wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}" || { echo "FAILED: pip install"; status=1; }
    "$PY" - "$SITE" <<'EOF' || status=1
import sys
import tempfile
from importlib import metadata

site = sys.argv[1]
failed = False
try:
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}, GPUs {torch.cuda.device_count()}")
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"  cuda:{i} {p.name}, capability {p.major}.{p.minor}, "
              f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
    if not torch.cuda.is_available():
        print("FAILED: torch sees no CUDA device")
        failed = True
except Exception as err:
    print(f"FAILED: torch: {type(err).__name__}: {err}")
    failed = True

# The image's versions of what the project and the carried wheels rely on.
relied = ["numpy", "scipy", "tifffile", "scikit-image", "imageio", "pillow", "safetensors",
          "pytest", "psutil", "packaging", "pyyaml", "fsspec", "toolz", "cloudpickle",
          "click", "msgpack", "jinja2", "sortedcontainers", "urllib3", "tqdm"]


def present(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


print("image: " + ", ".join(f"{n} {present(n) or 'MISSING'}" for n in relied))
carried = sorted(metadata.distributions(path=[site]), key=lambda d: d.metadata["Name"].lower())
print("carried: " + ", ".join(f"{d.metadata['Name']} {d.version}" for d in carried))

# Each carried wheel's requirements, met by what this Python now sees (a warning only).
try:
    from packaging.requirements import Requirement

    for dist in carried:
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = present(req.name)
            if have is None or have not in req.specifier:
                print(f"WARNING: {dist.metadata['Name']} needs {req}, found {have}")
except Exception as err:
    print(f"WARNING: requirements not checked: {type(err).__name__}: {err}")

# The carried packages import and work (a zarr v3 round trip through dask, OME models).
try:
    import dask.array as da
    import distributed  # noqa: F401
    import numcodecs  # noqa: F401
    import numpy as np
    import pydantic
    import yaozarrs
    import zarr
    from yaozarrs import v05  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        data = np.arange(24, dtype="uint16").reshape(2, 3, 4)
        zarr.create_array(f"{tmp}/a.zarr", data=data, chunks=(1, 3, 4))
        assert (da.from_zarr(f"{tmp}/a.zarr").compute() == data).all()
    print(f"carried imports ok: zarr {zarr.__version__}, pydantic {pydantic.VERSION}, "
          f"yaozarrs {metadata.version('yaozarrs')}")
    import napari_wne

    print(f"napari_wne {napari_wne.__version__} from {napari_wne.__file__}")
except Exception as err:
    print(f"FAILED: carried packages: {type(err).__name__}: {err}")
    failed = True
sys.exit(1 if failed else 0)
EOF
    exit $status
fi

mkdir -p "$OUT"
began=$SECONDS
failures=0
: >"$OUT/summary.txt"

step() { # step NAME MOST KEEP COMMAND...: at most MOST s, leaving KEEP s of BUDGET
    local name=$1 most=$2 keep=$3
    shift 3
    local left=$((BUDGET - (SECONDS - began) - keep))
    local limit=$((most < left ? most : left))
    if ((limit < 10)); then
        echo "$name: SKIPPED (budget spent)" | tee -a "$OUT/summary.txt"
        failures=$((failures + 1))
        return
    fi
    echo "=== $name, at most $limit s: $*"
    local start=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]} verdict=ok
    if ((rc == 124 || rc == 137)); then
        verdict="TIMED OUT"
    elif ((rc != 0)); then
        verdict="FAILED (exit $rc)"
    fi
    ((rc == 0)) || failures=$((failures + 1))
    echo "$name: $verdict in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

export PY SITE WHEELS
step 00-setup 60 380 bash "$self" setup
step 01-pytest 200 260 "$PY" -m pytest -m gpu -q tests/test_gpu.py -p no:cacheprovider \
    --durations=0
step 02-doctor 60 220 "$PY" -m napari_wne.cli doctor --seconds 2
step 03-bench_devices 200 130 "$PY" benchmarks/bench_devices.py --devices cuda --threads 8
step 04-bench_pipeline 200 40 "$PY" benchmarks/bench_pipeline.py --devices cuda \
    --precisions float32 bfloat16 float16 --repeats 3
step 05-bench_host 60 0 "$PY" benchmarks/bench_pipeline.py --devices cuda --host-only \
    --precisions float32 --repeats 3

if grep -q "_cuda:start" docs/performance.md; then
    cp docs/performance.md "$OUT/performance.md"
fi
echo "=== $((SECONDS - began)) s in all"
cat "$OUT/summary.txt"
if ((failures)); then
    echo "$failures step(s) did not pass"
    exit 1
fi
echo "all steps passed"
