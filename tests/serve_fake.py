"""Run the real daemon with the fake adapter: ``python serve_fake.py CONFIG``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from pycrid.adapters.config import load_config
from pycrid.server.daemon import serve


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_adapter import FakeAdapter

    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(load_config(Path(sys.argv[1])), FakeAdapter()))


if __name__ == "__main__":
    main()
