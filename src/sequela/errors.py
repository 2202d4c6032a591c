"""The project's error types. This module imports nothing of ours, so any module can use them."""


class ConfigError(ValueError):
    """One bad value in params.yaml (or a bad command-line value a stage was given)."""
