"""Numbered SQL migrations, applied in order by flagsvc.store.db.migrate()."""
