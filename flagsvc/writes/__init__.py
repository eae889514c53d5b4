"""The write path (SPEC §10): one application-level command per kind of change, shared by
the admin API, the web console's API calls, the CLI and imports. A command owns its checks,
its store transaction (group types the change needs are created inside it), its audit entry
and the invalidation of this process's caches; routes parse, call one, and render.

- flags.py: create, update, delete/restore and import flags (through `Store.write_flag`).
- project.py: projects, settings, group types, tokens, signing keys.
- users.py: console users (create, role / disabled, projects, password reset).
- Ingestion's command is `Store.ingest` (one transaction per batch, de-duplication and
  privacy inside it; see flagsvc/store/ingest.py), called by every ingestion route.
"""

from typing import Any

from . import users
from .flags import (
    check_flag,
    create_flag,
    group_types_to_create,
    import_flags,
    no_cycle,
    set_flag_deleted,
    update_flag,
)
from .project import (
    create_group_type,
    create_project,
    delete_group_type,
    rename_group_type,
    rotate_signing_key,
    rotate_token,
    update_settings,
)


class Uncached:
    """The `service` of a process that caches nothing and serves nothing (the CLI): the
    commands write through its store as they do for a server; running nodes see the change
    as any other node's (`flags_rev`, the one-second token cache)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def invalidate(self, project_id: int | None = None) -> None:
        pass

    def forget_tokens(self) -> None:
        pass


__all__ = ["Uncached", "check_flag", "create_flag", "create_group_type", "create_project",
           "delete_group_type",
           "group_types_to_create", "import_flags", "no_cycle", "rename_group_type",
           "rotate_signing_key", "rotate_token", "set_flag_deleted", "update_flag",
           "update_settings", "users"]
