"""The OCI chain ID of an image's layers, as containerd shows it in ``crictl inspecti``."""

from __future__ import annotations

import hashlib


def chain_id(diff_ids: list[str]) -> str:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256 of "ChainID(Ln-1) DiffID(Ln)"."""
    chain = ""
    for diff_id in diff_ids:
        if not chain:
            chain = diff_id
        else:
            chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain
