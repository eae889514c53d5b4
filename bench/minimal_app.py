"""The baseline of bench_decide: a minimal Flask JSON endpoint under the same gunicorn
configuration as `flagsvc serve` (flagsvc.server.run: same options, worker count and
worker class), so the ratio isolates what flagsvc's decide adds.

    python bench/minimal_app.py --bind 127.0.0.1:8001 [--workers N]
"""

from __future__ import annotations

import argparse

from flask import Flask, jsonify, request


def create_minimal_app() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return {"status": "ok"}

    @app.post("/flags/")
    @app.post("/flags")
    def flags():  # type: ignore[no-untyped-def]
        body = request.get_json(force=True, silent=True) or {}
        return jsonify({"flags": {}, "errorsWhileComputingFlags": False,
                        "distinct_id": body.get("distinct_id")})

    return app


def main() -> None:
    from flagsvc import server

    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="127.0.0.1:8001")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    # Reuse flagsvc's own gunicorn runner, swapping only the application it loads.
    server._Gunicorn.load = lambda self: create_minimal_app()  # type: ignore[method-assign]
    server.run(bind=args.bind, workers=args.workers, access_log=False)


if __name__ == "__main__":
    main()
