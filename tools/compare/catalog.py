"""What ``pycrid compare`` offers, by name: light enough for the command's parser.

``pycrid serve`` builds the same parser, so this module imports nothing of
the comparison itself (scenarios.py keeps its suite in the order of NAMES).
"""

from __future__ import annotations

DEFAULT_IMAGES = {
    "busybox": "registry.k8s.io/e2e-test-images/busybox:1.29-2",
    "web": "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
    "pause": "registry.k8s.io/pause:3.10",
    # Pulled and removed by the images scenario; nothing else uses it.
    "removable": "gcr.io/k8s-staging-cri-tools/test-image-3:latest",
    "missing": "registry.k8s.io/e2e-test-images/pycrid-compare-missing:1",
}
NAMES = (
    "runtime-info",
    "images",
    "pod-lifecycle",
    "exit-reasons",
    "security-context",
    "errors",
    "idempotence",
    "streaming",
)
FORMATS = ("table", "markdown", "json")
