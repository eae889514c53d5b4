"""Flag admin JSON API. Filled in by the admin work."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/api")
