"""`python -m napari_wne.cli`: the `napari-wne` command."""

import sys

from . import main

sys.exit(main())
