"""Errors whose message is already written for the user.

``UserMessageError``: its ``str()`` is one line beginning ``taskqueue: `` that names what failed
and what to do (for example "no Docker daemon answers ...; use --taskqueue-backend=local"). Where
errors meet the user (the plugin's fixtures, ``taskqueue-harness``), an error of this type is shown
as it is, with no traceback and no "failed to start" wrapping; any other error is wrapped.
"""

from __future__ import annotations

from typing import Final

__all__ = ["USER_MESSAGE_PREFIX", "UserMessageError"]

USER_MESSAGE_PREFIX: Final = "taskqueue: "
"""How every ``UserMessageError`` message begins (the pytest side shows it as it is)."""


class UserMessageError(RuntimeError):
    """An error whose message is one line for the user, beginning ``taskqueue: ``."""

    def user_message(self) -> str:
        """The message without its ``taskqueue: `` prefix (for surfaces that add their own)."""
        return str(self).strip().removeprefix(USER_MESSAGE_PREFIX)
