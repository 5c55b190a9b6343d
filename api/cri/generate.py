"""Generate the Python modules for the CRI schema in this directory.

Run as a script (`make proto` does): ``python api/cri/generate.py [--check]``.
The proto is compiled as ``pycrid/api/cri/api.proto`` so that the generated
stubs import ``pycrid.api.cri.api_pb2``. With ``--check`` nothing is written and
the exit status says whether the committed modules are up to date.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "api.proto"
OUTPUTS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")
IMPORT_PATH = Path("pycrid/api/cri")


def generate(out_dir: Path) -> None:
    """Compile api.proto and write the generated modules into ``out_dir``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        gen = Path(tmp) / "gen"
        (src / IMPORT_PATH).mkdir(parents=True)
        gen.mkdir()
        shutil.copy(PROTO, src / IMPORT_PATH / "api.proto")
        args = [
            "protoc",
            f"-I{src}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            str(IMPORT_PATH / "api.proto"),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on api.proto")
        for name in OUTPUTS:
            shutil.copy(gen / IMPORT_PATH / name, out_dir / name)


def stale_modules(committed_dir: Path = HERE) -> list[str]:
    """Names of the generated modules that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            name
            for name in OUTPUTS
            if not (committed_dir / name).exists()
            or (committed_dir / name).read_bytes() != (Path(tmp) / name).read_bytes()
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args()
    if args.check:
        stale = stale_modules()
        for name in stale:
            print(f"stale: api/cri/{name}", file=sys.stderr)
        return 1 if stale else 0
    generate(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
