"""Everything about writing an output safely: where, by whom, and resumable after a kill.

- `store`: the OME-Zarr image written block by block, complete only at the end;
- `paths`: which output paths are accepted and which folders are ours to replace;
- `lock`: one writer per output;
- `fingerprint`: what the input looked like, so `resume` notices it changed.
"""

from .fingerprint import input_fingerprint
from .lock import OutputInUseError, StaleLockWarning, output_lock
from .paths import check_output_path, default_output_name, owner, remove_ours
from .store import DiskFullError, IncompleteOutputError, OmeZarrOutput, check_not_unfinished

__all__ = [
    "DiskFullError",
    "IncompleteOutputError",
    "OmeZarrOutput",
    "OutputInUseError",
    "StaleLockWarning",
    "check_not_unfinished",
    "check_output_path",
    "default_output_name",
    "input_fingerprint",
    "output_lock",
    "owner",
    "remove_ours",
]
