"""The error every layer raises for bad input.

A `HetagentError` carries a message written for a person: it names the file, the op or field, what is wrong
and what would be valid. The CLI prints it as one paragraph and exits with status 2; it never shows a
traceback for one.
"""


class HetagentError(Exception):
    """Bad input or an unusable environment, explained for the user."""


class IRError(HetagentError):
    """An agent module that does not parse or does not verify."""

    def __init__(self, message: str, diagnostics: tuple = ()):
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)


class PluginError(HetagentError):
    """A backend plugin that cannot be loaded or returned records that break the contract."""


class RecordError(PluginError):
    """A record (device profile, detection result, ...) whose fields break its schema."""


class UnsupportedError(HetagentError):
    """A backend declines an op or a kernel it does not support: the op falls back to the CPU reference, and the
    conformance suite reports "unsupported" rather than a failure (`spec/conformance.md`)."""
