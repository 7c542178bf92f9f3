import sys

from reference_model.cli import main

sys.exit(main())
