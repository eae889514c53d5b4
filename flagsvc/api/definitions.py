"""Flag definitions and stored group lookups for in-process evaluators (remote FlagClient)."""

from flask import Blueprint

bp = Blueprint("definitions", __name__, url_prefix="/api")
