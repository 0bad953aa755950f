"""`python -m stylegan_blend` = the `stylegan-blend` command."""
import sys

from .app.cli import main

sys.exit(main())
