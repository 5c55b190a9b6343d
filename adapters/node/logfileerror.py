"""The error for a container log file that cannot be made where the pod's config says.

``log_directory`` and ``log_path`` are the caller's: a directory that cannot
hold files (``/proc/self``, a read-only mount, a file) is their mistake, and
the answer says which field, not a bare ``[Errno 2]``.
"""

from __future__ import annotations

from pycrid.adapters.errors import CRIError, FailedPrecondition


def log_file_error(log_directory: str, log_path: str, error: OSError) -> CRIError:
    reason = error.strerror or str(error)
    return FailedPrecondition(
        f"log_directory {log_directory[:256]!r}: cannot create the log file "
        f"{log_path[:256]!r} there: {reason}"
    )
