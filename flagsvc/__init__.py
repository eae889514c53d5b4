"""flagsvc: self-hosted group-level feature flags for B2B products.

    from flagsvc import FlagClient
    flags = FlagClient.from_database("flagsvc.db", api_token="phc_...")
    flags.get_flag("new-billing", groups={"project": "p1"})
"""

from typing import Any

__all__ = ["FlagClient", "FlagClientError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so `import flagsvc.engine` stays free of Flask, SQLite and HTTP imports.
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(name)
