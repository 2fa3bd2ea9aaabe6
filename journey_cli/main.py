"""``journey <command>``: ``journey rules validate|publish|status`` (see ``journey rules -h``),
``journey privacy report`` (see ``journey privacy report -h``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: journey rules {validate,publish,status} ...  (journey rules -h for details)")
        print("       journey privacy report (--email X | --phone X | --customer-id X | ... | --profile-id P) [--json]")
        return 0 if args else 2
    if args[0] == "rules":
        from journey_cli.rules import main as rules_main

        return rules_main(args[1:])
    if args[:2] == ["privacy", "report"]:
        from journey_cli.privacy import main as privacy_main

        return privacy_main(args[2:])
    print(f"journey: unknown command {' '.join(args[:2])!r} (known: rules, privacy report)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
