"""The docker SDK and requests, imported without a character-set guesser.

requests guesses the character set of an answer that names none with
charset_normalizer (or chardet): about 2.6 MiB of compiled modules in every
daemon, for a guess pycrid never needs. dockerd answers JSON, which requests
decodes without guessing, and requests supports running without either
library (it then takes UTF-8). So, unless something in the process imported
requests already, both are kept out, and the warning requests gives for that
is silenced. Every module of the docker adapter imports the SDK from here.
"""

from __future__ import annotations

import sys
import warnings

if "requests" not in sys.modules:
    for _guesser in ("charset_normalizer", "chardet"):
        sys.modules.setdefault(_guesser, None)  # type: ignore[arg-type]

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
    import docker
    import docker.errors
    import requests
    import requests.exceptions

__all__ = ["docker", "requests"]
