"""The CRI contract suite: end-to-end tests of CRI behaviour, run once per adapter.

Every test here drives a real daemon over its socket with CRI calls only (and
crictl, which makes the same calls), never by looking at the backend, so the
same test holds for the docker and the oci adapter. Tests of one adapter's
own workings (Docker labels and inspect, the oci image store) stay in
``crictl_tests/test_docker_*.py`` and ``crictl_tests/test_oci_*.py``.

What an adapter cannot do yet is an expected failure with its reason, marked
strict in ``conftest.py``: the day the adapter can, the test passes, pytest
reports the strict XPASS as a failure, and whoever made it work removes the
mark.
"""
