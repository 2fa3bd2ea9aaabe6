"""``journey <command>``: ``journey rules validate|publish|status`` (see ``journey rules -h``),
``journey privacy report`` (see ``journey privacy report -h``), ``journey tail <topic>`` (see
``journey tail -h``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: journey rules {validate,publish,status} ...  (journey rules -h for details)")
        print("       journey privacy report (--email X | --phone X | --customer-id X | ... | --profile-id P) [--json]")
        print(
            "       journey tail <topic> [-f] [--from earliest|latest] [-n N] [--profile-id P | --customer-id X | ...]"
        )
        return 0 if args else 2
    if args[0] == "rules":
        from journey_cli.rules import main as rules_main

        return rules_main(args[1:])
    if args[0] == "tail":
        from journey_cli.tail import main as tail_main

        return tail_main(args[1:])
    if args[:2] == ["privacy", "report"]:
        from journey_cli.privacy import main as privacy_main

        return privacy_main(args[2:])
    print(f"journey: unknown command {' '.join(args[:2])!r} (known: rules, privacy report, tail)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
