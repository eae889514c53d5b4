"""@openfeature/web-sdk with the stock @openfeature/ofrep-web-provider in headless Chromium
against a real flagsvc (bundled with esbuild from tests/js at test time): CORS preflight with
Authorization and If-None-Match, bulk evaluation, polling with ETag, a server-side definition change
reported as PROVIDER_CONFIGURATION_CHANGED, the SDK's error codes (type mismatch, flag not
found, targeting key missing); no console error and no failed request."""

from __future__ import annotations

import json

import requests

from tests.test_browser_posthog import browser, bundle, static_site  # noqa: F401 (fixtures)
from tests.test_decide import _expected_variant, _seed

ENTRY = """
import {OpenFeature, ProviderEvents} from '@openfeature/web-sdk';
import {OFREPWebProvider} from '@openfeature/ofrep-web-provider';
window.runOfrep = async (cfg) => {
  await OpenFeature.setContext({groups: {project: 'p1'}});
  await OpenFeature.setProviderAndWait(new OFREPWebProvider({
    baseUrl: cfg.url, headers: [['Authorization', 'Bearer ' + cfg.token]], pollInterval: 300}));
  const client = OpenFeature.getClient();
  const s = client.getStringDetails('ab-test', 'none');
  const b = client.getBooleanDetails('enterprise-only', false);
  const mismatch = client.getNumberDetails('ab-test', 7);
  const missing = client.getBooleanDetails('no-such-flag', true);
  const nokey = client.getBooleanDetails('acme-people', true);
  await OpenFeature.setContext({targetingKey: 'alice', groups: {project: 'p1'}});
  const person = client.getBooleanValue('acme-people', false);
  await new Promise(r => setTimeout(r, 1200));  // a few polls (If-None-Match -> 304)
  // A definition changed on the server: the next poll's ETag differs, the provider says so.
  window.changed = new Promise(resolve => client.addHandler(
    ProviderEvents.ConfigurationChanged, d => resolve(d.flagsChanged || [])));
  return {s, b, mismatch, missing, nokey, person};
};
window.afterChange = async () => {
  const keys = await window.changed;
  return {keys, value: OpenFeature.getClient().getBooleanValue('brand-new', false)};
};
"""


def test_ofrep_web_provider_in_chromium(live_server, static_site, browser):  # noqa: F811
    _seed(live_server.store, live_server.project["id"])
    site, origin = static_site
    bundle(site, ENTRY, "ofrep.js", "@openfeature/web-sdk", "@openfeature/ofrep-web-provider")
    (site / "ofrep.html").write_text('<!doctype html><html><head><meta charset="utf-8">'
                                     '<link rel="icon" href="data:,"><script src="/ofrep.js">'
                                     '</script></head><body></body></html>')
    page = browser.new_page()
    problems: list[str] = []
    statuses: list[tuple[str, str, int]] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))

    def on_response(r):
        if r.url.startswith(live_server.url):
            statuses.append((r.request.method, r.url[len(live_server.url):], r.status))
            if r.status >= 400:
                problems.append(f"{r.status}: {r.url}")
    page.on("response", on_response)
    page.goto(f"{origin}/ofrep.html")
    out = page.evaluate("cfg => window.runOfrep(cfg)",
                        {"url": live_server.url, "token": live_server.project["api_token"]})
    r = requests.post(f"{live_server.url}/api/flags", timeout=10, json={"key": "brand-new"},
                      headers={"Authorization": f"Bearer {live_server.project['secret_key']}"})
    assert r.status_code == 201, r.text
    changed = page.evaluate("() => window.afterChange()")
    page.close()
    assert problems == [], "\n".join(problems)
    variant = _expected_variant("a1")
    assert out["s"]["value"] == variant and out["s"]["variant"] == variant
    assert json.loads(out["s"]["flagMetadata"]["payload"]) == {
        "color": "blue" if variant == "control" else "green"}
    assert out["b"]["value"] is True and out["b"]["reason"] == "TARGETING_MATCH"
    assert out["person"] is True
    assert out["mismatch"]["value"] == 7 and out["mismatch"]["errorCode"] == "TYPE_MISMATCH"
    assert out["missing"]["value"] is True and out["missing"]["errorCode"] == "FLAG_NOT_FOUND"
    assert out["nokey"]["value"] is True
    assert out["nokey"]["errorCode"] == "TARGETING_KEY_MISSING"
    assert "brand-new" in changed["keys"] and changed["value"] is True
    posts = [s for m, p, s in statuses if m == "POST" and p == "/ofrep/v1/evaluate/flags"]
    assert 304 in posts, statuses
