"""dmvpnd: one process per DMVPN tunnel.

dmvpnd --config /etc/dmvpn/dmvpn0.yaml     run the daemon
dmvpnd check-config FILE                   exit 0, or print every problem and exit 1
dmvpnd config-docs                         the config reference as Markdown
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..daemon.config import SCHEMA, ConfigError, load
from ..daemon.schema import render_markdown

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2


def config_reference() -> str:
    lines = [
        "| key | type | default | meaning | on SIGHUP |",
        "| --- | --- | --- | --- | --- |",
        *render_markdown(SCHEMA),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check-config":
        if len(argv) != 2:
            print("usage: dmvpnd check-config FILE", file=sys.stderr)
            return EXIT_USAGE
        try:
            load(argv[1])
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return EXIT_CONFIG
        print(f"{argv[1]}: ok")
        return EXIT_OK
    if argv and argv[0] == "config-docs":
        sys.stdout.write(config_reference())
        return EXIT_OK

    parser = argparse.ArgumentParser(prog="dmvpnd", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--config", "-c", required=True, help="the tunnel's YAML config")
    parser.add_argument("--version", action="version", version=f"dmvpnd {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    from ..daemon.loop import run  # imported late: check-config stays light

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
