"""``python -m resemote_lib COMMAND``: see ``resemote_lib.cli``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
