"""flagsvc: self-hosted group-level feature flags for B2B products.

    from flagsvc import FlagClient
    flags = FlagClient.from_database("flagsvc.db", api_token="phc_...")
    flags.get_flag("new-billing", groups={"project": "p1"})
"""

from .client import FlagClient, FlagClientError

__all__ = ["FlagClient", "FlagClientError"]
__version__ = "0.1.0"
