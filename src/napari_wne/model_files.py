"""Where a model lives, by name: the files of a trained model folder (written by
``napari-wne train``) and the prefixes of model strings that name a zoo package.

Their own home, free of torch, so that listing models (``napari-wne models``) needs none.
"""

CARD_FILE = "model.json"
"""The trained model's description: backbone, settings, training record."""
WEIGHTS_FILE = "model.safetensors"
"""The trained backbone's state dict (without the parameter-free WNE wrapper)."""
ZOO_PREFIXES = ("bioimageio:", "wne+bioimageio:")
"""Model strings that name a BioImage Model Zoo package: as it is, or wrapped with WNE."""
