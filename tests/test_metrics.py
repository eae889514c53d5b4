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
