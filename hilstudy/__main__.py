import sys

from hilstudy.cli import main

sys.exit(main())
