"""``python -m streams.schemas``: write (or ``--check``) the checked-in schema files."""

import sys

from streams.schemas.generate import main

sys.exit(main())
