"""One error type per layer. Each message names the file, key or line, the value, and the fix;
the command line prints it without a traceback and exits non-zero."""


class LlmbuildError(Exception):
    """Base of every error meant for the user."""


class ConfigError(LlmbuildError):
    """A config file, recipe or override is wrong."""


class DataError(LlmbuildError):
    """A dataset file or row is malformed."""


class StageError(LlmbuildError):
    """A stage cannot produce its artifact from its inputs."""


class ToolError(LlmbuildError):
    """An external tool (LLaMA-Factory, llama.cpp) failed or is missing."""
