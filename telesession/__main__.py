"""``python -m telesession``: the command line (see ``telesession.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
