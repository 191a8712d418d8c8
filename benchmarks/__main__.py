"""``python -m benchmarks [--quick] [--scenarios S1,S3] [--repeat N]``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
