"""The commands: the CLI (`python -m resemote_lib ...`) and the notebook pipeline it runs."""
