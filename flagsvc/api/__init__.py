"""HTTP surfaces, one blueprint each: health, decide, capture (ingestion), admin."""
