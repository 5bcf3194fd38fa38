"""Attaching the console to the application (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable

from treadle.api.app import Application
from treadle.console.more_pages import MorePages
from treadle.console.ops_pages import OpsPages
from treadle.console.pages import TenantPages
from treadle.console.session import Sessions
from treadle.console.web import Console
from treadle.tenancy.ports import KeySecret


def attach_console(
    app: Application,
    *,
    token_secret: bytes,
    admin_key: tuple[str, str],
    tenant_keys: Callable[[str], KeySecret | None],
    now_s: Callable[[], float],
) -> Console:
    """Serve the console from `app` (its fourth surface)."""
    console = Console(Sessions(token_secret, tenant_keys=tenant_keys, admin_key=admin_key))
    TenantPages(console, app.call_as, now_s).register()
    MorePages(console, app.call_as).register()
    OpsPages(console, app.call_as).register()
    app.console = console
    return console
