"""The python-backend pitfall: make Triton's backend stub load *this* interpreter's libpython.

PyTriton's tritonserver runs each model through `triton_python_backend_stub`, a binary linked against
`libpython3.X.so`. The dynamic linker finds that library on LD_LIBRARY_PATH or in the system folders; when the
running interpreter is another build of the same version (pyenv, conda, a venv on either), the stub gets the
system's library and dies as soon as it touches an object of ours, e.g. with
`'_thread.RLock' object has no attribute '_recursion_count'`. Putting the running interpreter's LIBDIR first on
LD_LIBRARY_PATH before tritonserver is spawned (it copies our environment) makes the stub load the same build.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)


def interpreter_libdir() -> Path | None:
    """The folder holding the running interpreter's shared libpython, or None for a statically linked build."""
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [ldlibrary] if ldlibrary.endswith(".so") or ".so." in ldlibrary else []
    candidates += [f"libpython{version}.so", f"libpython{version}.so.1.0"]
    if any((Path(libdir) / name).exists() for name in candidates):
        return Path(libdir)
    return None


def with_libdir_first(environ: Mapping[str, str], libdir: Path) -> dict[str, str]:
    """A copy of `environ` whose LD_LIBRARY_PATH starts with `libdir` (once, whatever was there before)."""
    env = dict(environ)
    others = [part for part in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if part and part != str(libdir)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *others])
    return env


def use_interpreter_libpython() -> Path | None:
    """Apply the fix to os.environ (call before Triton starts); returns the folder put first, if any."""
    libdir = interpreter_libdir()
    if libdir is None:
        # Without a shared libpython of our own the stub can only use the system's; say so, it may still work
        # when the system's is the same build.
        log.warning(
            "the running Python (%s) has no shared libpython; Triton's python backend stub will load the "
            "system's libpython%d.%d, which must be the same build", sys.executable, *sys.version_info[:2]
        )
        return None
    os.environ.update(with_libdir_first(os.environ, libdir))
    log.debug("LD_LIBRARY_PATH starts with %s for Triton's python backend stub", libdir)
    return libdir
