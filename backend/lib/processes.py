"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A ``preexec_fn``: in the child, before exec, ask Linux to send it SIGTERM when its parent
    dies, so a supervisor killed outright (SIGKILL) takes its children with it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
