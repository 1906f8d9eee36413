"""The launcher's one-line error type."""


class LaunchError(RuntimeError):
    """Bad executor options, a missing optional dependency, or a failed submission."""
