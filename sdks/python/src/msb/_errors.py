"""Errors of the msb SDK: one class per kind of failure, each carrying msbd's message."""

from __future__ import annotations

from typing import Optional


class MsbError(Exception):
    """Anything msbd refused or failed; ``message`` is msbd's own."""

    def __init__(self, message: str, *, status: Optional[int] = None, kind: Optional[str] = None,
                 exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.exit_code = exit_code


class NotFoundError(MsbError):
    """No sandbox has this name (404)."""


class AlreadyExistsError(MsbError):
    """The sandbox name is taken (409 on create)."""


class ConflictError(MsbError):
    """The sandbox's state does not allow the operation (409): not running, draining, ..."""


class InvalidArgumentError(MsbError):
    """The request breaks a documented constraint (400) or cannot be carried out here (422)."""


class StartFailedError(InvalidArgumentError):
    """The command could not start (422 ``start_failed``); ``exit_code`` is a shell's (127, 126)."""


class MetricsDisabledError(ConflictError):
    """The sandbox was created with metrics off (``metrics_interval=0``)."""


class MetricsUnavailableError(ConflictError):
    """No sample yet: the first arrives within one interval of the start."""


class DaemonUnreachableError(MsbError):
    """msbd is not answering on its socket and could not be started."""


def error_from(status: int, body: object, *, operation: str = "") -> MsbError:
    """The typed error for an answer of msbd with ``status`` and its ``ErrorBody``."""
    if isinstance(body, dict):
        message = str(body.get("error", f"msbd answered {status}"))
        kind = body.get("kind")
        exit_code = body.get("exit_code")
    else:
        message, kind, exit_code = f"msbd answered {status}: {body!r}", None, None
    args = dict(status=status, kind=kind, exit_code=exit_code)
    if status == 404:
        return NotFoundError(message, **args)
    if status == 409:
        if operation == "create":
            return AlreadyExistsError(message, **args)
        if operation == "metrics":
            if "disabled" in message:
                return MetricsDisabledError(message, **args)
            return MetricsUnavailableError(message, **args)
        return ConflictError(message, **args)
    if kind == "start_failed":
        return StartFailedError(message, **args)
    if status in (400, 415, 422):
        return InvalidArgumentError(message, **args)
    return MsbError(message, **args)
