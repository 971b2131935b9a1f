"""User-facing errors: one line, names the file or option and the fix; the CLI exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (missing file, bad layout, unknown name).

    The CLI prints ``error: <message>`` and exits with status 2, without a traceback unless
    ``--debug`` is given. Messages name the offending file or option and say how to fix it.
    """


class DeviceUnreachable(UserError):
    """A benchmark device that cannot be reached (connection refused or timed out, login
    refused, not attached): every later artifact for it would fail the same way, so the
    benchmark reports it once per device instead of retrying per artifact."""
