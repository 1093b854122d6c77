"""``python -m geoharmony`` (also what ``torchrun -m geoharmony`` runs)."""

import sys

from geoharmony.cli import main

sys.exit(main())
