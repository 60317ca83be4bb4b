"""`python -m humanseg.cli VERB ...` is `humanseg VERB ...`."""

import sys

from humanseg.cli import main

sys.exit(main())
