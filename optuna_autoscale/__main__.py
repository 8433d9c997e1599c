"""``python -m optuna_autoscale``: the ``optuna-autoscale`` command line."""
import sys

from optuna_autoscale.cli import main


sys.exit(main())
