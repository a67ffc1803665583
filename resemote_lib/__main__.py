"""``python -m resemote_lib COMMAND``: see ``resemote_lib.commands.cli``."""

from .commands.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
