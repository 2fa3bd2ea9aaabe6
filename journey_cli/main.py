"""``journey <command>``: ``journey rules validate|publish|status`` (see ``journey rules -h``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: journey rules {validate,publish,status} ...  (journey rules -h for details)")
        return 0 if args else 2
    if args[0] == "rules":
        from journey_cli.rules import main as rules_main

        return rules_main(args[1:])
    print(f"journey: unknown command {args[0]!r} (known: rules)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
