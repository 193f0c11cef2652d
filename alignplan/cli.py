"""The `alignplan` command. Each area registers its own subcommands; this file only dispatches.

A bad input anywhere ends in one line on stderr naming the field and what is accepted, and exit 2:
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from planner.parsing import printable

# (module, function that adds subparsers). Modules are imported lazily so `alignplan plan` never
# pays for torch.
_AREAS = ("planner.cli", "advisor.cli", "runners.cli", "alignplan.data_cli", "alignplan.calibrate_cli")


class CliError(Exception):
    """An input error to print as one line (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignplan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an area not built yet
            if exc.name == name:
                continue
            raise
        module.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, CliError) as exc:
        # planner/advisor/runners errors are ValueError subclasses that name the field.
        print(printable(f"alignplan {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except OSError as exc:  # a path that is a folder, unreadable, missing: name the file
        where = exc.filename if exc.filename is not None else ""
        print(printable(f"alignplan {args.command}: error: {where}: {exc.strerror or exc}"), file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"alignplan {args.command}: error: the run registry (runs/registry.db) cannot be read: {exc}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
