"""``python -m LowLightDenoiseLib``: the same command line as ``lowlightdenoise``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
