"""`python -m sppo_hub.hub.server DATA_DIR PORT [USER]`: serve with the token from $SPPO_HUB_TOKEN.

Used to run the local Hub as a separate process (tests kill it mid-commit); the CLI equivalent is
`sppo-hub hub serve`.
"""

import os
import sys

from . import serve

if __name__ == "__main__":
    data_dir, port = sys.argv[1], int(sys.argv[2])
    user = sys.argv[3] if len(sys.argv) > 3 else "sppo-user"
    serve(data_dir, port=port, token=os.environ.get("SPPO_HUB_TOKEN") or None, user=user)
