"""Errors a user can cause and fix; the CLI prints these as one line instead of a traceback.

Set GENFORGE_DEBUG=1 to see the traceback anyway.
"""


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/inf; the message names the step and the last good checkpoint."""


class DistributedError(RuntimeError):
    """A multi-process (torchrun) run could not form its process group; the message names the timeout."""


USER_ERRORS = (ValueError, OSError, NotImplementedError, TrainingDiverged, DistributedError)
