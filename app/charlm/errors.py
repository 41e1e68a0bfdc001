"""Errors a user can fix; the CLI maps them to exit code 2 and the API to a 4xx `detail`."""


class CharLMError(Exception):
    """Base class: the message is shown to the user as is, so it must name the problem."""


class InvalidInput(CharLMError):
    """Bad data, options or prompt (unknown characters, empty file, out-of-range value)."""


class ModelNotFound(CharLMError):
    """No model of that name in the store and no model directory at that path."""


class InvalidModel(CharLMError):
    """A model directory that is damaged, foreign or of an unsupported format version."""


class TrainingCancelled(CharLMError):
    """Training was stopped from outside (a cancelled job) before it finished."""


class WorkStopped(CharLMError):
    """Sampling was stopped from outside (a spent work budget or a caller that went away)."""
