"""Process exit codes, as documented in docs/cli.md and ``qrclient --help``."""

OK = 0
INTERNAL_ERROR = 1  # a bug in qrclient: one line (and with -v the traceback)
USAGE = 2  # bad usage or input
NETWORK = 3  # could not connect, rejected, aborted, timed out, protocol error
FAILURE_STATUS = 4  # the peer answered with a failure status
PARTIAL = 5  # partial results (truncated by the peer, or an incomplete retrieve)
STORE_FAILED = 6  # the local store cannot be written: disk full, read-only, permission
STORE_DAMAGED = 7  # the store's index is damaged: qrclient store rebuild
STORE_BUSY = 8  # the store is in use by another qrclient (use --wait SECONDS)
INTERRUPTED = 130
