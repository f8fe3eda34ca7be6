"""`python -m privtrain.ledger show` works like `privtrain ledger show`."""

import sys

from privtrain.ledger.cli import main

sys.exit(main())
