"""Prometheus metrics: requests counted per route and status, latency observed."""

from __future__ import annotations


def _samples(client, name):
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in lines if line.startswith(name)}


def test_requests_are_counted_per_route_and_status(client, app_project):
    before = _samples(client, "flagsvc_http_requests_total")
    client.post("/flags/?v=2", json={"api_key": app_project["api_token"]})
    client.post("/flags/?v=2", json={"api_key": "phc_wrong"})
    client.get("/no-such-route")
    after = _samples(client, "flagsvc_http_requests_total")

    def delta(labels):
        key = f"flagsvc_http_requests_total{{{labels}}}"
        return after.get(key, 0) - before.get(key, 0)

    assert delta('endpoint="/flags/",status="200"') == 1
    assert delta('endpoint="/flags/",status="401"') == 1
    assert delta('endpoint="unmatched",status="404"') == 1
    latency = _samples(client, "flagsvc_http_request_seconds_count")
    assert latency['flagsvc_http_request_seconds_count{endpoint="/flags/"}'] >= 2


def test_metrics_token_is_required_when_set(db_path):
    from flagsvc.app import create_app

    client = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING",
                         "METRICS_TOKEN": "mt_scrape_only"}).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "mt_scrape_only"},
                    {"Authorization": "Basic bXRfc2NyYXBlX29ubHk6"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"flagsvc_http" not in r.data
    r = client.get("/metrics", headers={"Authorization": "Bearer mt_scrape_only"})
    assert r.status_code == 200 and b"flagsvc_http_requests_total" in r.data
    assert client.get("/healthz").status_code == 200  # only /metrics is guarded


def test_metrics_are_open_by_default_and_can_be_turned_off(client, db_path):
    from flagsvc.app import create_app

    assert client.get("/metrics").status_code == 200
    off = create_app({"DATABASE": db_path, "LOG_LEVEL": "WARNING", "METRICS": False})
    assert off.test_client().get("/metrics").status_code == 404
