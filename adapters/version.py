"""Names and versions pycrid reports about itself."""

from importlib.metadata import PackageNotFoundError, version

RUNTIME_NAME = "pycrid"
KUBELET_API_VERSION = "0.1.0"  # kubelet refuses any other value
RUNTIME_API_VERSION = "v1"

try:
    PYCRID_VERSION = version("pycrid")
except PackageNotFoundError:  # running from a source tree that is not installed
    PYCRID_VERSION = "0.0.0+unknown"
