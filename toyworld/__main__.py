"""``python -m nested_attention.toyworld ...``: the toy world's command line (see cli.py)."""
import sys

from .cli import main

sys.exit(main())
