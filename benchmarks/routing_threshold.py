"""Where should `model="auto"` switch to the correlated-noise model? Measured on validation data.

`napari_wne.routing` switches when the noise correlation, estimated from the noisy image,
falls from lag 1 to 2 faster than from lag 2 to 3 by `DROP_THRESHOLD`. The right threshold
is where the two models' scores cross, and it moves whenever either model gets new
weights. This sweeps the noise kernel on the clean W2S validation field (010_0, never
scored) at the correlated benchmark's middle photon level and prints, per kernel and seed,
the estimated drop excess and both models' PSNR (gain fit), so the crossing can be read
off without touching test images.

    python benchmarks/routing_threshold.py
"""

from __future__ import annotations

import numpy as np
import torch

from _data import W2S_CLEAN
from napari_wne.datasets import read_image
from napari_wne.metrics import scores
from napari_wne.models import load_model
from napari_wne.noise_stats import estimate_correlation
from napari_wne.routing import CORRELATED_NOISE_MODEL, WHITE_NOISE_MODEL, drop_excess
from quality_routing import noisy_copy

SIGMAS = (0.35, 0.4, 0.415, 0.43, 0.46, 0.5, 0.55)
SEEDS = 3


def main() -> None:
    torch.set_num_threads(1)
    # Read as `quality_routing` reads its test images, and scaled by the same `noisy_copy`.
    clean = read_image(W2S_CLEAN).astype(np.float64)
    names = (WHITE_NOISE_MODEL, CORRELATED_NOISE_MODEL)
    models = {name: load_model(name, 2, "cpu").eval() for name in names}
    header = f"| kernel sigma (px) | seed | estimated drop excess | {' | '.join(models)} |"
    print(f"{header} difference |")
    print("|---|---|---|---|---|---|")
    for sigma in SIGMAS:
        for seed in range(SEEDS):
            noisy, target = noisy_copy(clean, sigma, seed=500 + seed)
            lags = estimate_correlation(noisy)
            x = torch.from_numpy(noisy.astype(np.float64))[None, None]
            with torch.inference_mode():
                psnr = [scores(m(x)[0, 0].numpy(), target)[0] for m in models.values()]
            print(f"| {sigma} | {seed} | {drop_excess(lags):.3f} | {psnr[0]:.2f} | "
                  f"{psnr[1]:.2f} | {psnr[1] - psnr[0]:+.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
