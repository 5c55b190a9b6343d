"""This machine's platform and picking the matching manifest out of an index.

The rules follow containerd's platform matcher: the OS and architecture must
be equal; a variant is preferred when it equals ours, an entry without one is
accepted, and arm64's implied variant is v8.
"""

from __future__ import annotations

import platform as _platform

from pycrid.adapters.oci.images.manifest import Descriptor, Index, ManifestError, Platform

_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform() -> Platform:
    """The platform images are pulled for on this machine."""
    machine = _platform.machine().lower()
    architecture, variant = _ARCHITECTURES.get(machine, (machine, ""))
    return Platform(os="linux", architecture=architecture, variant=variant)


def _normal_variant(p: Platform) -> str:
    if p.architecture == "arm64" and p.variant in ("", "v8"):
        return "v8"
    return p.variant


def matches(candidate: Platform, wanted: Platform) -> bool:
    if candidate.os != wanted.os or candidate.architecture != wanted.architecture:
        return False
    variant = _normal_variant(candidate)
    return not candidate.variant or variant == _normal_variant(wanted)


def select(index: Index, wanted: Platform | None = None) -> Descriptor:
    """The index entry for ``wanted`` (this machine by default), exact variant first."""
    wanted = wanted or host_platform()
    candidates = [
        d for d in index.manifests if d.platform is not None and matches(d.platform, wanted)
    ]
    exact = [d for d in candidates if d.platform and _normal_variant(d.platform) == wanted.variant]
    chosen = (exact or candidates)[0] if exact or candidates else None
    if chosen is None:
        offered = sorted({str(d.platform) for d in index.manifests if d.platform})
        raise ManifestError(
            f"no image for platform {wanted} in the index (it has {', '.join(offered) or 'none'})"
        )
    return chosen
