"""The exit codes of the ``kmssign`` command, defined once."""

EXIT_OK = 0  # every file done (signed, verified, skipped)
EXIT_FAILED = 1  # a file or the run failed
EXIT_USAGE = 2  # the command line itself is wrong (argparse's code)
