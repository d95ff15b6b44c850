import sys

from qrclient.cli.main import main

sys.exit(main())
