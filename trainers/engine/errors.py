"""Errors caused by a user's config or inputs; train.py prints them as one line, without a traceback."""


class ConfigError(ValueError):
    pass
