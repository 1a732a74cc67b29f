"""Errors sevc raises for bad input: each carries one clear, user-facing message."""


class SevcError(Exception):
    """Base class of every error sevc reports to a user (bad file, stream, argument)."""


class CheckpointError(SevcError):
    """A checkpoint file that cannot be read or does not fit the model."""


class BitstreamError(SevcError):
    """A bitstream that is truncated, corrupted or not a sevc/SEVC stream."""
