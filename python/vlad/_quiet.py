"""No driver noise on the user's stderr.

Mesa's Vulkan drivers (lavapipe, llvmpipe, and the hardware ones) print
"XDG_RUNTIME_DIR is invalid or not set in the environment" on stderr each
time an instance is made while that variable is unset — six lines for one
``backend="auto"`` encode. A compute library has no use for a runtime
folder (it opens no window, no Wayland or X socket), so, as the command
line does (src/cli/mod.rs, ``quiet_mesa``), the package points it at the
system's temporary folder when it is unset, once, at import, before any
adapter is probed. A value the user set is kept.
"""

from __future__ import annotations

import os
import tempfile


def quiet_mesa() -> None:
    """Set ``XDG_RUNTIME_DIR`` to the temporary folder when it is unset
    (``os.environ`` also sets the C environment the drivers read)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.gettempdir()
