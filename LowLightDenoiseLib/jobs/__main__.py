"""``python -m LowLightDenoiseLib.jobs JOB.json``: run one job in this process (see :mod:`.child`)."""
import sys

from .child import main

if __name__ == "__main__":
    sys.exit(main())
