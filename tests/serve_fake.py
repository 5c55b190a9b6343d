"""Run the real daemon with the fake adapter: ``python serve_fake.py CONFIG``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from pycrid.adapters.config import load_config
from pycrid.server.daemon import serve


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_adapter import FakeAdapter

    class GatedAdapter(FakeAdapter):
        """Starts only once the file named by PYCRID_FAKE_START_GATE exists."""

        async def start(self) -> None:
            gate = Path(os.environ["PYCRID_FAKE_START_GATE"])
            Path(f"{gate}.waiting").touch()
            while not gate.exists():
                await asyncio.sleep(0.02)
            await super().start()

    adapter = GatedAdapter() if "PYCRID_FAKE_START_GATE" in os.environ else FakeAdapter()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(load_config(Path(sys.argv[1])), adapter))


if __name__ == "__main__":
    main()
