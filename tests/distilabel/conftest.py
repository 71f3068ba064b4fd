"""The distilabel-front tests keep ``datasets``' cache out of the home directory."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(tempfile.gettempdir(), "datamill-tests-hf-datasets"))
