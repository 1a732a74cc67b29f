"""Errors sevc raises for bad input: each carries one clear, user-facing message."""


class SevcError(Exception):
    """Base class of every error sevc reports to a user (bad file, stream, argument)."""


class CheckpointError(SevcError):
    """A checkpoint file that cannot be read or does not fit the model."""


class BitstreamError(SevcError):
    """A bitstream that is truncated, corrupted or not a sevc/SEVC stream."""


class LimitError(SevcError):
    """A frame size or frame count outside what sevc codes."""


class FrameError(SevcError):
    """Input frames that are missing, mis-named, unreadable, of the wrong size or too few."""


class OutputError(SevcError):
    """An output path that cannot or may not be written."""


class ConfigError(SevcError):
    """A test configuration that does not follow the schema."""


class ReportError(SevcError):
    """Result files that cannot be read or compared."""


class NotComparable(ReportError):
    """Two RD curves that BD-rate cannot compare; the message says why."""


class TrainingError(SevcError):
    """A training configuration, data set or output folder that cannot be used."""


class AnchorError(SevcError):
    """A standard-codec anchor that cannot be coded: no FFmpeg, an encoder it lacks, a failed run."""


class JobRecordError(SevcError):
    """A folder of finished-job records (of test.py or anchors.py) that cannot be resumed."""
