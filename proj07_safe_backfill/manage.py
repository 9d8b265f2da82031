#!/usr/bin/env python
"""Django's command-line utility for this project (settings: the package named like this folder)."""
from migrationlab.manage import main

if __name__ == "__main__":
    main(__file__)
