"""``python -m nested_attention.toyworld ...``: the toy world's command line (see cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":  # not in a process the evaluation spawns (it imports this module as __mp_main__)
    sys.exit(main())
