"""Ingestion: wire formats (Segment, PostHog, Accoil) → normalized `Call`s → `Store.ingest`.

- `model`: the normalized `Call` and the `IngestResult` of a batch;
- `formats`: pure parsers of each wire format, with per-event validation;
- `privacy`: per-project private property keys (dropped or stored as a keyed hash).
"""

from .model import Call, IngestResult

__all__ = ["Call", "IngestResult"]
