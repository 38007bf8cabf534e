"""One error type for bad settings, so every failure names the setting to fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is wrong or missing.

    Args:
        setting: the dotted config key (or environment variable) the user should change.
        message: what is wrong, in one sentence.
    """

    def __init__(self, setting: str, message: str):
        self.setting = setting
        super().__init__(f"{message} (setting to fix: `{setting}`)")
