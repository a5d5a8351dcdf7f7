"""``python -m nested_attention.training``: the trainer's command line (cli.py)."""
import sys

from .cli import main

sys.exit(main())
