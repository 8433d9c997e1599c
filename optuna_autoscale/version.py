"""The package version, defined once: pyproject.toml reads it (``dynamic = ["version"]``) and
``optuna_autoscale.__version__`` re-exports it."""

__version__ = "0.1.0"
