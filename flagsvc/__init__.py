"""flagsvc: self-hosted group-level feature flags for B2B products.

    from flagsvc import FlagClient
    flags = FlagClient.from_database("flagsvc.db", api_token="phc_...")
    flags.get_flag("new-billing", groups={"project": "p1"})

    # on the app's backend, for a project with require_signed_groups:
    from flagsvc import sign_context
    signature = sign_context(signing_key, "user-1", {"organization": "acme"})
"""

from typing import Any

__all__ = ["FlagClient", "FlagClientError", "sign_context"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so `import flagsvc.engine` stays free of Flask, SQLite and HTTP imports.
    if name == "sign_context":
        from .signing import sign_context

        return sign_context
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
