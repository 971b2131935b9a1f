"""User-facing errors: one line, names the file or option and the fix; the CLI exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (missing file, bad layout, unknown name).

    The CLI prints ``error: <message>`` and exits with status 2, without a traceback unless
    ``--debug`` is given. Messages name the offending file or option and say how to fix it.
    """
