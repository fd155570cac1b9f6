"""``python -m LowLightDenoiseLib.batch``: the same as ``lowlightdenoise batch``."""
import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["batch"] + sys.argv[1:]))
