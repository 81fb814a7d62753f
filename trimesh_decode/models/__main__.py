"""``python -m trimesh_decode.models export RUN NAME --command ...``"""

import sys

from trimesh_decode.models import main

sys.exit(main())
