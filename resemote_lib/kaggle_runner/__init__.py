"""The script a Kaggle kernel pushed by ``resemote_lib.kernel`` runs (``runner.py``).

``runner.py`` uses the standard library only: on Kaggle it runs before the project's
requirements are checked. ``kernel.kernel_script`` appends the source bundle and the run's
settings to its text; importing it here (tests, ``kernel``) runs nothing.
"""
