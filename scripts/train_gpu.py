"""A `train_campaign.py` recipe on a CUDA GPU, sized to a wall-clock budget.

    python scripts/train_gpu.py runs/white-gpu --seconds 380 -- --workers 12 \
        --noise mixed --no-natural --fluorescence --phantoms 0 --w2s-rows 384 --select w2s \
        --patch 128 --batch 32 --lr 1e-4 --average 0.999

Why a second script: a GPU is lent for minutes, and the campaign's cosine learning rate
needs the run's length up front. So a short probe run (`--probe-steps`, its weights thrown
away) measures the steps per second first, and the real run gets as many steps as fit in
what is left of `--seconds` (`--share` of it: validation, checkpoints and the batch
workers' start take the rest). Everything after `--` is `train_campaign.py`'s own options;
give it `--workers` (`napari_wne.batches`), or the GPU waits on one core's batch drawing.
The run folder is an ordinary one (`scripts/ship_model.py` takes it).

On the lent GPU machine (no network): `bash scripts/gpu_wheels.sh` here fills `.whl/` and
`.gpudata/` (the training images too); the run tool then carries both, and the command
installs the wheels as `scripts/gpu_checks.sh` does, sets `PYTHONPATH=src:/tmp/site` and
`NAPARI_WNE_DATA=.gpudata`, and writes the run folder under `$OUT`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_campaign

from napari_wne.run_folder import CARD_FILE


def run(output_dir: Path, steps: int, campaign_args: list[str]) -> float:
    """One campaign run of `steps`; returns its steps per second of training time."""
    train_campaign.main([str(output_dir), "--steps", str(steps), *campaign_args])
    card = json.loads((output_dir / CARD_FILE).read_text())
    return steps / max(card["wall_time_s"], 1e-3)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    ours, campaign_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock budget")
    parser.add_argument("--probe-steps", type=int, default=300)
    parser.add_argument(
        "--share", type=float, default=0.8,
        help="of the time left after the probe, the share the step estimate may fill",
    )  # fmt: skip
    args = parser.parse_args(ours)

    began = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as probe:  # beside nothing the user keeps
        rate = run(Path(probe), args.probe_steps, [*campaign_args, "--select", "last"])
    left = args.seconds - (time.perf_counter() - began)
    steps = max(args.probe_steps, int(rate * left * args.share) // 100 * 100)
    print(f"probe: {rate:.1f} steps/s; {left:.0f} s left: {steps} steps", flush=True)
    run(args.output_dir, steps, campaign_args)
    print(f"done in {time.perf_counter() - began:.0f} s of {args.seconds:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
