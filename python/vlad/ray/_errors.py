"""Ray wraps an exception raised in a task or actor (``RayTaskError``, Ray
Data's ``UserCodeException``); the driver re-raises the ``vlad.InputError``
inside with its own message, so callers catch what ``vlad`` raises."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Optional

from .._vlad import BackendUnavailable, InputError


def _find(error: BaseException) -> Optional[BaseException]:
    seen = set()
    stack: list[Optional[BaseException]] = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (InputError, BackendUnavailable)):
            return e
        cause = getattr(e, "cause", None)  # Ray's wrapper keeps the original here
        stack.extend([e.__cause__, e.__context__, cause if isinstance(cause, BaseException) else None])
    return None


def _message(error: BaseException) -> str:
    # A RayTaskError that is also an InputError (Ray's dual class) prints
    # the remote traceback; the message is its first argument.
    return str(error.args[0]) if error.args else str(error)


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Run the block; a vlad error raised remotely comes out as itself."""
    try:
        yield
    except (InputError, BackendUnavailable) as error:
        cls = BackendUnavailable if isinstance(error, BackendUnavailable) else InputError
        if type(error) in (InputError, BackendUnavailable):
            raise
        raise cls(_message(error)) from None
    except Exception as error:  # noqa: BLE001 (re-raised unless it is vlad's)
        inner = _find(error)
        if inner is None:
            raise
        cls = BackendUnavailable if isinstance(inner, BackendUnavailable) else InputError
        raise cls(_message(inner)) from None


def surfacing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Ray Data UDF so that a ``vlad.InputError`` it raises reaches
    the driver as itself (a ``RayTaskError`` that is also an ``InputError``)
    instead of inside Ray Data's ``UserCodeException``, whose message is
    only its traceback's text. Ray Data reads the flag in the worker when
    the exception passes; other exceptions are wrapped as usual."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError:
            import ray.data

            ray.data.DataContext.get_current().raise_original_map_exception = True
            raise

    return wrapped
