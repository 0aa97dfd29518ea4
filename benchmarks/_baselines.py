"""The classical methods every quality table scores next to the models.

- Gaussian blurs: one of 1 px, and one whose sigma is picked per image with the clean
  image's help (on a grid widened while its best sigma is at an end, then refined to
  0.01 px: an upper bound for any Gaussian blur).
- scikit-image's non-local means, with the noise sigma estimated from the image.
- BM3D (the `bm3d` package of the `bench` extra; None without it), twice:
  - *blind*: white noise of the sigma `estimate_sigma` reads off the image, as a user
    without a clean reference would run it;
  - *oracle*: given what the clean reference says of the noise: its power spectrum, so
    its spatial correlation, with or without the capture's variance-vs-mean line first
    stabilized by the generalized Anscombe transform (whichever scores better). Like the
    blur oracle, an upper bound no user can reach, and the strongest classical baseline
    we know for correlated noise.
- BM4D for volumes (the `bm4d` package `bm3d` depends on), as an oracle for white
  noise: the variance-vs-mean line stabilized, and the stabilized noise's sigma, from the
  clean volume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize_scalar
from skimage.restoration import denoise_nl_means, estimate_sigma

from _cache import cached_scores
from napari_wne.metrics import fitted_psnr, scores
from napari_wne.noise_stats import variance_vs_mean

BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MIN_BLUR_SIGMA, MAX_BLUR_SIGMA = 0.1, 64.0
"""The blur oracle's search stops here: a narrower blur is the input, a wider one a mean."""
BM3D_BLIND = "BM3D (bm3d package; sigma estimated, white)"
BM3D_ORACLE = "BM3D, oracle (noise curve and spectrum from the clean image)"
"""The two BM3D rows' names, the same in every table."""
PSD_SMOOTHING = 2.0
"""Frequency bins: the residual's periodogram is smoothed by this Gaussian (wrapping), to an
estimate of its spectrum rather than of this one realization."""


def classical_methods(
    noisy: np.ndarray,
    clean: np.ndarray,
    bm3d_suffix: str | None,
    blur_oracle_label: str = "Gaussian blur (best sigma)",
) -> dict[str, Callable[[], np.ndarray]]:
    """Each classical row's name and a call that returns its result, in table order.

    BM3D is left out when `bm3d_suffix` is None; otherwise the suffix ends both BM3D
    names (a table that runs it on some images only says so there).
    """
    found = {
        "noisy input": lambda: noisy,
        "Gaussian blur (sigma 1)": lambda: gaussian_filter(noisy, 1.0),
        blur_oracle_label: lambda: best_blur(noisy, clean),
        "non-local means (skimage)": lambda: non_local_means(noisy),
    }
    if bm3d_suffix is not None:
        found[BM3D_BLIND + bm3d_suffix] = lambda: bm3d_blind(noisy)
        found[BM3D_ORACLE + bm3d_suffix] = lambda: bm3d_oracle(noisy, clean)
    return found


def scored_methods(
    methods: dict[str, Callable[[], np.ndarray]],
    noisy: np.ndarray,
    clean: np.ndarray,
    machine: str,
    results: dict[str, np.ndarray] | None = None,
    refresh: bool = False,
) -> dict[str, tuple[float, float, float]]:
    """(PSNR, SSIM, seconds) of each method's result against `clean`, each run timed.

    BM3D takes 15 to 35 s an image and does not depend on our models, so its scores come
    from `_cache` when `noisy` and `clean` were scored before. The key does not cover the
    oracle's own code (`bm3d_oracle`, `variance_vs_mean`): after changing that, run with
    `refresh`, which recomputes. `results`, when given, receives every result array,
    which the cache cannot give back: then everything runs.
    """
    found = {}
    for name, run in methods.items():
        if results is None and name.startswith((BM3D_BLIND, BM3D_ORACLE)):
            (psnr, ssim), seconds = cached_scores(
                name, "bm3d", (noisy, clean), lambda run=run: scores(run(), clean), machine,
                refresh=refresh,
            )  # fmt: skip
        else:
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
            psnr, ssim = scores(result, clean)
            if results is not None:
                results[name] = result
        found[name] = (psnr, ssim, seconds)
    return found


def unit(image: np.ndarray) -> np.ndarray:
    """0.1..99.9 percentiles to 0..1: baselines with absolute parameters see one scale."""
    low, high = np.percentile(image, [0.1, 99.9])
    return (image - low) / ((high - low) or 1.0)


def best_blur(
    noisy: np.ndarray, clean: np.ndarray, sigmas: tuple[float, ...] = BLUR_SIGMAS
) -> np.ndarray:
    """The Gaussian blur of `noisy` that scores best against `clean`: an oracle no user has.

    The grid is extended by steps of 1.5x while its best sigma is at either end (strong
    noise wants far wider blurs than weak noise), and the best sigma is then refined
    between its neighbours to 0.01 px: the oracle is as strong as a Gaussian blur can be,
    not limited by the grid.
    """
    grid = sorted(sigmas)
    score = {s: fitted_psnr(gaussian_filter(noisy, s), clean) for s in grid}
    while max(score, key=score.get) == grid[-1] and grid[-1] < MAX_BLUR_SIGMA:
        grid.append(grid[-1] * 1.5)
        score[grid[-1]] = fitted_psnr(gaussian_filter(noisy, grid[-1]), clean)
    while max(score, key=score.get) == grid[0] and grid[0] > MIN_BLUR_SIGMA:
        grid.insert(0, grid[0] / 1.5)
        score[grid[0]] = fitted_psnr(gaussian_filter(noisy, grid[0]), clean)
    best = grid.index(max(score, key=score.get))
    bounds = (grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)])
    found = minimize_scalar(
        lambda s: -fitted_psnr(gaussian_filter(noisy, s), clean),
        bounds=bounds,
        method="bounded",
        options={"xatol": 0.01},
    )
    sigma = found.x if -found.fun > score[grid[best]] else grid[best]
    return gaussian_filter(noisy, sigma)


def reference_sigma(clean: np.ndarray) -> float:
    """The noise a reference keeps of its own, on the 0..1 scale of `unit` (skimage's
    `estimate_sigma`: an overestimate where fine detail leaks into it)."""
    return float(estimate_sigma(unit(clean.astype(np.float64))))


def perfect_denoiser(clean: np.ndarray) -> float:
    """The PSNR of a result free of all noise, the reference's own included, on the scale
    of `napari_wne.metrics.scores`: the reference's estimated noise is all its error."""
    sigma = reference_sigma(clean)
    return 10 * math.log10(1.0 / sigma**2) if sigma > 0 else math.inf


def non_local_means(noisy: np.ndarray) -> np.ndarray:
    image = unit(noisy)
    sigma = float(estimate_sigma(image))
    return denoise_nl_means(
        image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
    )


def bm3d_package():
    """The `bm3d` module, or None when it is not installed.

    Its correlated-noise path (bm4d) still calls ``np.trapz``, which NumPy 2.4 removed;
    the alias below is the same function under its new name.
    """
    try:
        import bm3d
    except ImportError:
        return None
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # noqa: NPY201 (the alias bm4d needs)
    return bm3d


def bm4d_oracle(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """BM4D on a volume with white noise, told its variance-vs-mean line by the clean one."""
    bm3d_package()  # the NumPy alias
    import bm4d

    noisy = np.asarray(noisy, dtype=np.float64)
    gain, read_variance, noise = variance_vs_mean(noisy, clean)
    if gain <= 0:
        return bm4d.bm4d(noisy, sigma_psd=float(noise.std()))
    image = stabilize(noisy, gain, read_variance)
    sigma = float((image - stabilize(noisy - noise, gain, read_variance)).std())
    return unstabilize(bm4d.bm4d(image, sigma_psd=sigma), gain, read_variance)


def bm3d_blind(noisy: np.ndarray) -> np.ndarray:
    """BM3D for white noise of the sigma estimated from the image alone."""
    return bm3d_package().bm3d(noisy, sigma_psd=float(estimate_sigma(noisy)))


def stabilize(z: np.ndarray, gain: float, read_variance: float) -> np.ndarray:
    """The generalized Anscombe transform: noise of variance ``gain * z + read_variance``
    becomes noise of variance about 1."""
    return (2 / gain) * np.sqrt(np.maximum(gain * z + 0.375 * gain**2 + read_variance, 0.0))


def unstabilize(d: np.ndarray, gain: float, read_variance: float) -> np.ndarray:
    """`stabilize` undone for a denoised (mean) d: E[d]^2 is about E[d^2] - 1, since d has
    unit variance, so the algebraic inverse's 3/8 becomes 1/8 (asymptotically unbiased)."""
    return gain * d**2 / 4 - gain / 8 - read_variance / gain


def bm3d_oracle(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """BM3D told the noise's variance-vs-mean line and spectrum by the clean reference.

    Run twice, on the capture as it is and stabilized, each with its own residual's
    spectrum; the result closer to the clean image is kept (neither wins everywhere:
    stabilizing helps photon-limited white noise most, and can cost on smoothed noise).
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    gain, read_variance, noise = variance_vs_mean(noisy, clean)
    expected = noisy - noise  # the clean image on the capture's scale
    results = [_bm3d_spectrum(noisy, expected)]
    if gain > 0:  # else nothing signal-dependent to stabilize
        stabilized = _bm3d_spectrum(
            stabilize(noisy, gain, read_variance), stabilize(expected, gain, read_variance)
        )
        results.append(unstabilize(stabilized, gain, read_variance))
    return max(results, key=lambda r: scores(r, clean)[0])


def _bm3d_spectrum(image: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """BM3D given the power spectrum of ``image - expected`` (its periodogram, smoothed)."""
    residual = image - expected
    residual -= residual.mean()
    spectrum = gaussian_filter(np.abs(np.fft.fft2(residual)) ** 2, PSD_SMOOTHING, mode="wrap")
    return bm3d_package().bm3d(image, sigma_psd=spectrum)
