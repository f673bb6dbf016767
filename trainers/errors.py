"""The project's user-facing errors: one base class, raised by our own checks at every layer.

``train.py`` (and the tools' command lines) print a :class:`UserError` as one message, without a
traceback, and exit with :data:`EXIT_USER_ERROR`. Every message names the culprit (the file, key or
value) and the fix. Standard library only, so that every layer (datasets, backbone, engine, the
trainers, tools) may import it; the built-in base classes keep ``except FileNotFoundError`` /
``except ValueError`` working for callers that predate this module.
"""
from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class UserError(Exception):
    """A problem with the command line, a config, an input file or the output folder that the user can fix."""


class ConfigError(UserError, ValueError):
    """A config file, key or value is wrong (unknown key, wrong type, out-of-range or inconsistent value)."""


class DataError(UserError, ValueError):
    """A dataset file (split file, caption file, class list, image) is malformed or inconsistent."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset folder or file is missing; the message says where it was expected and how to get it."""


class ImageReadError(DataError):
    """An image listed by a split cannot be decoded (corrupt, truncated, 0 bytes)."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint or resume marker is missing, unreadable, inconsistent, or does not fit the model."""


class BackboneError(UserError, ValueError):
    """The CLIP weights cannot be found or read."""


class OutputDirError(UserError, OSError):
    """The output folder cannot be used: it is a file, not writable, full, or another run is writing into it."""


def user_message(err: BaseException) -> str:
    """The message of ``err`` as the user should read it.

    PyTorch re-raises a DataLoader worker's exception as ``type(err)("Caught X in DataLoader worker process
    N.\nOriginal Traceback ...\nmodule.X: <message>")``; only ``<message>`` is kept.
    """
    message = str(err)
    if "Original Traceback" not in message:
        return message
    cls = type(err)
    for name in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__):
        position = message.rfind(f"\n{name}: ")
        if position >= 0:
            return message[position + len(name) + 3:].strip()
    return message
