"""The write path (SPEC §10): one application-level command per kind of change, shared by
the admin API, the web console's API calls, the CLI and imports. A command owns its checks,
its store transaction (group types the change needs are created inside it), its audit entry
and the invalidation of this process's caches; routes parse, call one, and render.

- flags.py: create, update, delete/restore and import flags (through `Store.write_flag`).
- project.py: settings, group types, tokens, signing keys.
- Ingestion's command is `Store.ingest` (one transaction per batch, de-duplication and
  privacy inside it; see flagsvc/store/ingest.py), called by every ingestion route.
"""

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
    delete_group_type,
    rename_group_type,
    rotate_signing_key,
    rotate_token,
    update_settings,
)

__all__ = ["check_flag", "create_flag", "create_group_type", "delete_group_type",
           "group_types_to_create", "import_flags", "no_cycle", "rename_group_type",
           "rotate_signing_key", "rotate_token", "set_flag_deleted", "update_flag",
           "update_settings"]
