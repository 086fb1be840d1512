import sys

from jaxgames.cli import main

sys.exit(main())
