"""The exit statuses of the ``pycrid`` command (documented in docs/running.md)."""

OK = 0
STARTUP_FAILED = 1
"""serve: the daemon could not start (backend, socket, lock, streaming address)."""
USAGE = 2
"""The command line is wrong (argparse's own status)."""
CONFIG_INVALID = 3
"""The configuration file or a flag's value is refused."""
CHECKS_FAILED = 4
"""doctor: at least one check failed."""
