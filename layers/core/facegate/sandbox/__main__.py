import sys

from facegate.sandbox.job import main

sys.exit(main())
