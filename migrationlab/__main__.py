import sys

from migrationlab.cli import main

sys.exit(main())
