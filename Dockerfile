# flagsvc: docker build -t flagsvc . && docker run -p 8000:8000 -v flagsvc-data:/data flagsvc
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLAGSVC_DATABASE=/data/flagsvc.db \
    FLAGSVC_SECRET_KEY_FILE=/data/flagsvc.secret_key

WORKDIR /app
COPY pyproject.toml README.md wsgi.py ./
COPY flagsvc ./flagsvc
COPY migrations ./migrations
# [postgresql]: the same image runs as one node of several (FLAGSVC_DATABASE=postgresql://...)
RUN pip install --no-cache-dir '.[postgresql]' \
    && useradd --system --uid 10001 --home-dir /data flagsvc \
    && mkdir -p /data && chown flagsvc /data

USER flagsvc
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# The first start on an empty volume (or PostgreSQL database) creates the default project:
# its api token is printed, its secret key written to /data/flagsvc.secret_key (mode 0600;
# FLAGSVC_SECRET_KEY_FILE: /data is the one directory the flagsvc user may write, /app is
# root's), never to the log (or both are taken from FLAGSVC_API_TOKEN / FLAGSVC_SECRET_KEY). `flagsvc serve` runs gunicorn
# with flagsvc's request-buffering worker (flagsvc/http_worker.py): slow clients cannot hold
# its threads, so the port can face the public; TLS and per-client limits belong in front.
CMD ["flagsvc", "serve", "--bind", "0.0.0.0:8000"]
