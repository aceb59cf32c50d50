"""``python -m chiron_gym.cli``: the ``chiron`` command."""

import sys

from chiron_gym.cli.parser import main

sys.exit(main())
