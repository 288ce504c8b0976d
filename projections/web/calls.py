"""The pages read and record through the query API's own route functions.

A page does not query a table or build a command of its own: it calls the route that
answers the same question over HTTP, with the session's principal, after the check that
route declares (the scopes of its ``require`` dependency, read off its signature). So a
reader's console shows exactly what a reader's key reads from the API, and a page can never
reach data its key could not.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from projections.api.access import Principal, Scope
from projections.api.context import ApiContext
from projections.api.problems import Forbidden

T = TypeVar("T")


@functools.cache
def route_scopes(route: Callable[..., Any]) -> frozenset[Scope]:
    """The scopes the route's ``who`` parameter requires."""
    hints = typing.get_type_hints(route, include_extras=True)
    hint = hints.get("who")
    for meta in typing.get_args(hint)[1:]:
        scopes = getattr(getattr(meta, "dependency", None), "scopes", None)
        if scopes:
            return frozenset(scopes)
    raise TypeError(f"{route.__qualname__} declares no scopes for 'who'")


async def call(
    route: Callable[..., Awaitable[T]], ctx: ApiContext, who: Principal, /, **arguments: Any
) -> T:
    """``route(**arguments, ctx=ctx, who=who)``, if ``who`` holds one of its scopes; raises
    the route's own problems (404, 409, 422...) as they are."""
    needed = route_scopes(route)
    if not who.has_any(*needed):
        names = ", ".join(sorted(s.value for s in needed))
        raise Forbidden(f"this key lacks the scope needed here (one of: {names})")
    structlog.contextvars.bind_contextvars(key_id=who.key_id, tenant=who.tenant)
    return await route(ctx=ctx, who=who, **arguments)


def allowed(route: Callable[..., Any], who: Principal) -> bool:
    """Whether ``who`` may call ``route`` (pages hide what a key cannot use)."""
    return who.has_any(*route_scopes(route))
