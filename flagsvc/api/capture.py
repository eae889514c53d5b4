"""Ingestion endpoints (Segment, PostHog, Accoil wire formats). Filled in by the ingestion work."""

from flask import Blueprint

bp = Blueprint("capture", __name__)
