"""Exceptions that the command line turns into exit codes (docs/user-guide.md section 2)."""


class InputError(Exception):
    """Bad user input (case file, parameter set, override, mesh bundle): exit code 2."""


class SolverFailure(Exception):
    """A numerical failure that survived every retry: exit code 1."""
