"""``python -m jpegedit.models export RUN NAME --command ...``"""

import sys

from jpegedit.models import main

sys.exit(main())
