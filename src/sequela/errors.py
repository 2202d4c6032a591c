"""The project's error types. This module imports nothing of ours, so any module can use them."""


class ConfigError(ValueError):
    """One bad value in params.yaml (or a bad command-line value a stage was given)."""


class MissingDatasetError(ConfigError):
    """The dataset's files are not on disk and could not be downloaded. A ConfigError, so a stage
    reports it as one line naming where to put the files, with no traceback."""


class StageError(RuntimeError):
    """An expected failure while a stage runs, such as an input artefact that cannot be read. A
    stage reports it as one line (what, where, how to fix it) with no traceback."""
