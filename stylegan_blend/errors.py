"""One exception type for bad user input: the CLI prints its message as a single line and exits 1."""


class UserError(Exception):
    """Bad input (missing/corrupt file, wrong value). The message names the file or value and what was expected."""
