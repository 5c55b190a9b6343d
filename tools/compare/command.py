"""``pycrid compare A B``: the command line over ``run.compare``."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from pycrid.server import exitcodes
from pycrid.tools.compare.catalog import DEFAULT_IMAGES, FORMATS, NAMES

INTERRUPTED = 130


def add_parser(commands: Any) -> None:
    """Add ``compare`` to the ``pycrid`` command's subparsers."""
    p = commands.add_parser(
        "compare",
        help="run the same CRI calls against two runtimes and show every difference",
        description="Run a suite of CRI scenarios against two runtimes with the same inputs; "
        "show the differences in the answers (expected ones with their reason) and the "
        "latencies. Exit status 0 when no difference is unexpected, 1 otherwise.",
        epilog=f"Scenarios: {', '.join(NAMES)}. Images: "
        + ", ".join(f"{k}={v}" for k, v in DEFAULT_IMAGES.items()),
    )
    p.add_argument("a", metavar="A", help="unix:///path/to/cri.sock, adapter:docker or adapter:oci")
    p.add_argument("b", metavar="B", help="the other side, in the same form")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="run only these scenarios",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="leave these scenarios out",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=5,
        metavar="N",
        help="times each call that changes nothing is made, for the timings (default: 5)",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ROLE=REF",
        help=f"use another image for a role ({', '.join(DEFAULT_IMAGES)})",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="(default: table)")
    p.add_argument("--plot", type=Path, metavar="FILE", help="also draw the timings (.png or .svg)")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="more expected differences, in the shipped rules' TOML shape",
    )
    p.add_argument(
        "--adapter-config",
        type=Path,
        metavar="FILE",
        help="TOML laid over the config generated for adapter:... sides (registry mirrors, say)",
    )


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _images(values: list[str]) -> dict[str, str]:
    images = dict(DEFAULT_IMAGES)
    for value in values:
        role, sep, ref = value.partition("=")
        if not sep or role not in images or not ref:
            raise ValueError(f"--image {value}: expected ROLE=REF, ROLE one of {', '.join(images)}")
        images[role] = ref
    return images


def _fail(message: str, status: int = exitcodes.USAGE) -> int:
    print(f"pycrid compare: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    # Imported here: the parser above is built by every pycrid command, the daemon too.
    from pycrid.tools.compare import plot as plotlib
    from pycrid.tools.compare.report import render
    from pycrid.tools.compare.rules import RulesError, load_rules
    from pycrid.tools.compare.run import Options, compare
    from pycrid.tools.compare.scenarios import select
    from pycrid.tools.compare.sides import SideError, parse_side

    try:
        parse_side(args.a, "A")
        parse_side(args.b, "B")
        scenarios = select(_names(args.only), _names(args.skip))
        images = _images(args.image)
        rules = load_rules(args.rules)
        extra = tomllib.loads(args.adapter_config.read_text()) if args.adapter_config else {}
        if args.repeat < 1:
            raise ValueError("--repeat must be at least 1")
        if args.plot is not None:
            plotlib.check_available()
    except (SideError, ValueError, RulesError, plotlib.PlotError) as e:
        return _fail(str(e))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return _fail(f"--adapter-config: {e}")
    if not scenarios:
        return _fail("--only and --skip leave no scenario")
    options = Options(args.a, args.b, scenarios, rules, images, args.repeat, extra)
    try:
        result = compare(options)
    except KeyboardInterrupt:
        print("pycrid compare: interrupted; what it created is removed", file=sys.stderr)
        return INTERRUPTED
    except SideError as e:
        return _fail(str(e), exitcodes.STARTUP_FAILED)
    sys.stdout.write(render(result, args.format))
    if args.plot is not None:
        plotlib.plot(result, args.plot)
    return result.exit_status
