"""posthog-js (the stock npm build, unmodified) in headless Chromium against a real flagsvc
(SPEC §5.1): remote config, flags, group changes, payloads, and its events ingested. The page
comes from a separate static server (another origin, so CORS is exercised as in production);
the test fails on any console error or any failed request to flagsvc."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
import time

import pytest

from tests.capabilities import chromium_browser, node_modules
from tests.test_decide import _expected_variant, _seed

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="/%(build)s"></script></head><body>
<script>
window.flagsReady = new Promise(resolve => {
  // HeadlessChrome looks like a bot to posthog-js, which then drops events (its own advice
  // for end-to-end tests is this option).
  posthog.init(%(token)s, {api_host: %(host)s, opt_out_useragent_filter: true%(extra)s});
  posthog.onFeatureFlags(() => resolve(true));
});
</script></body></html>"""

SCENARIO = """async () => {
  const late = (what) => new Promise((_, no) => setTimeout(() => no(new Error(what)), 20000));
  await Promise.race([window.flagsReady, late('posthog-js loaded no flags in 20 s')]);
  const before = posthog.getFeatureFlag('ab-test');
  posthog.identify('alice', {email: 'alice@acme.com'});
  posthog.group('project', 'p1');
  await Promise.race([late('no flags after group() in 20 s'), new Promise(resolve => {
    const stop = posthog.onFeatureFlags(() => {
      const v = posthog.getFeatureFlag('ab-test');
      if (v !== undefined && v !== false) {
        stop(); resolve();
      }
    });
    posthog.reloadFeatureFlags();
  })]);
  const out = {
    before,
    variant: posthog.getFeatureFlag('ab-test'),
    payload: posthog.getFeatureFlagPayload('ab-test'),
    enterprise: posthog.isFeatureEnabled('enterprise-only'),
    enterprisePayload: posthog.getFeatureFlagPayload('enterprise-only'),
    people: posthog.isFeatureEnabled('acme-people'),
    off: posthog.isFeatureEnabled('off'),
  };
  posthog.capture('clicked', {where: 'test'});
  return out;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def end_headers(self):
        # as the CDNs that host posthog-js do (a script loaded with crossOrigin needs it)
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()


# An app that installs posthog-js from npm and bundles it (esbuild here, as webpack or vite
# would): the default entry, the lazy-loading module.
NPM_ENTRY = "import posthog from 'posthog-js';\nwindow.posthog = posthog;\n"


def bundle(site, entry_source, outfile, *packages):
    """Bundles `entry_source` (imports from tests/js's node_modules) into site/outfile."""
    modules = node_modules("esbuild", *packages)
    (site / f"{outfile}.entry.js").write_text(entry_source)
    subprocess.run([str(modules / ".bin" / "esbuild"), str(site / f"{outfile}.entry.js"),
                    "--bundle", "--format=iife", f"--outfile={site / outfile}"], check=True,
                   env={"NODE_PATH": str(modules), "PATH": "/usr/bin:/bin"},
                   capture_output=True, timeout=120)


@pytest.fixture
def static_site(tmp_path):
    """A static server for the page and posthog-js's own build files."""
    dist = node_modules("posthog-js") / "posthog-js" / "dist"
    site = tmp_path / "site"
    site.mkdir()
    for name in ("array.full.js", "array.js", "array.no-external.js"):
        shutil.copy(dist / name, site / name)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser():
    with chromium_browser() as b:
        yield b


def _events(live_server, event=None):
    sql = "SELECT event, distinct_id, properties, groups FROM events WHERE project_id = ?"
    rows = live_server.store.conn().execute(sql, [live_server.project["id"]]).fetchall()
    return [r for r in rows if event is None or r[0] == event]


def _watch(page, live_server):
    """Collects every console error, page error, failed request and 4xx/5xx answer from
    flagsvc (problems) and the paths asked of flagsvc."""
    problems: list[str] = []
    flagsvc_paths: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))

    def on_response(r):
        if r.url.startswith(live_server.url):
            flagsvc_paths.append(r.url[len(live_server.url):].split("?")[0])
            if r.status >= 400:
                problems.append(f"{r.status}: {r.url}")
    page.on("response", on_response)
    return problems, flagsvc_paths


# Every build a page can use, each with posthog-js's default options (nothing disabled):
# the full build; the lazy builds, which load each product's bundle from api_host's /static/
# when the remote config turns it on (array.js, what PostHog's snippet loads, and the npm
# module, bundled); the build with no loader, which reads the JSON config instead of
# config.js. None may make a failing request or log an error.
BUILDS = ["array.full.js", "array.js", "array.no-external.js", "npm-module.js"]


@pytest.mark.parametrize("build", BUILDS)
def test_posthog_js_runs_clean_against_flagsvc(live_server, static_site, browser, build):
    _seed(live_server.store, live_server.project["id"])
    site, origin = static_site
    if build == "npm-module.js":
        bundle(site, NPM_ENTRY, build, "posthog-js")
    token = live_server.project["api_token"]
    (site / "index.html").write_text(PAGE % {
        "build": build, "extra": "", "token": json.dumps(token),
        "host": json.dumps(live_server.url)})
    page = browser.new_page()
    problems, flagsvc_paths = _watch(page, live_server)
    page.goto(f"{origin}/index.html")
    out = page.evaluate(SCENARIO)
    # Events go out in batches (posthog-js flushes every few seconds): wait for the rows.
    deadline = time.time() + 20
    while time.time() < deadline and not (
            _events(live_server, "clicked") and _events(live_server, "$feature_flag_called")):
        page.wait_for_timeout(250)
    # A lazy product loaded late (after flags, or on the first events) still shows here.
    page.wait_for_timeout(1000)
    page.close()
    assert problems == [], "\n".join(problems)
    assert not [p for p in flagsvc_paths if p.startswith("/static/")], flagsvc_paths
    # The loader builds take config.js as the script posthog-js expects (it sets the global
    # it reads: had it not, posthog-js would fall back to the JSON config); the build with
    # no loader asks the JSON.
    config_paths = {p for p in flagsvc_paths if p.startswith(f"/array/{token}/")}
    expected = "config" if build == "array.no-external.js" else "config.js"
    assert config_paths == {f"/array/{token}/{expected}"}, flagsvc_paths
    variant = _expected_variant("a1")
    assert out["variant"] == variant
    assert out["payload"] == {"color": "blue" if variant == "control" else "green"}
    assert out["enterprise"] is True and out["enterprisePayload"] == {"limit": 10}
    assert out["people"] is True and out["off"] is False
    called = _events(live_server, "$feature_flag_called")
    assert {json.loads(r[2])["$feature_flag"] for r in called} >= {"ab-test", "enterprise-only"}
    clicked = _events(live_server, "clicked")
    assert clicked and clicked[0][1] == "alice"
    assert json.loads(clicked[0][3]) == {"project": "p1"}


# posthog-js's debug mode logs what its products do with the config (an error for a bundle
# that failed to load, a product it could not start); PostHog's snippet today also passes
# `defaults`, which turns on newer behaviour (history-change pageviews, head-injected
# scripts). Neither may show an error against flagsvc.
@pytest.mark.parametrize("build", ["array.js", "npm-module.js"])
def test_posthog_js_debug_mode_and_defaults_log_no_error(live_server, static_site, browser,
                                                         build):
    _seed(live_server.store, live_server.project["id"])
    site, origin = static_site
    if build == "npm-module.js":
        bundle(site, NPM_ENTRY, build, "posthog-js")
    (site / "index.html").write_text(PAGE % {
        "build": build, "extra": ", debug: true, defaults: '2026-08-29'",
        "token": json.dumps(live_server.project["api_token"]),
        "host": json.dumps(live_server.url)})
    page = browser.new_page()
    problems, flagsvc_paths = _watch(page, live_server)
    warnings: list[str] = []
    page.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    page.goto(f"{origin}/index.html")
    out = page.evaluate(SCENARIO)
    page.wait_for_timeout(3000)
    page.close()
    assert problems == [], "\n".join(problems)
    assert out["variant"] == _expected_variant("a1")
    # The one warning expected: surveys, told nothing, stay unloaded.
    assert all("Surveys" in w for w in warnings), warnings


# PostHog's copy-paste snippet, in substance: a stub `posthog` that queues calls, and a
# script tag for api_host + "/static/array.js" (which replays the queue when it loads).
SNIPPET = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>
!function(doc, ph) {
  if (ph.__SV) return;
  window.posthog = ph; ph._i = [];
  ph.init = function(token, config, name) {
    const tag = doc.createElement("script");
    tag.type = "text/javascript"; tag.crossOrigin = "anonymous"; tag.async = true;
    tag.src = config.api_host + "/static/array.js";
    doc.head.appendChild(tag);
    const target = name === undefined ? ph : (ph[name] = []);
    "capture identify group onFeatureFlags getFeatureFlag isFeatureEnabled reloadFeatureFlags"
      .split(" ").forEach(m => { target[m] = function() {
        target.push([m].concat(Array.prototype.slice.call(arguments))); }; });
    ph._i.push([token, config, name]);
  };
  ph.__SV = 1;
}(document, window.posthog || []);
posthog.init(%(token)s, {api_host: %(host)s, opt_out_useragent_filter: true});
window.flagsReady = new Promise(resolve => posthog.onFeatureFlags(() => resolve(true)));
</script></head><body></body></html>"""


def test_posthog_snippet_loads_array_js_through_flagsvc(db_path, static_site, browser):
    """With FLAGSVC_POSTHOG_JS_ASSETS set, flagsvc redirects the snippet's
    api_host/static/array.js to that copy of posthog-js; then the page runs clean."""
    from tests.conftest import start_live_server

    site, origin = static_site
    server = start_live_server(db_path, POSTHOG_JS_ASSETS=origin + "/")
    try:
        server.project = server.store.create_project("live", ingestion_creates_group_types=True)
        _seed(server.store, server.project["id"])
        (site / "snippet.html").write_text(SNIPPET % {
            "token": json.dumps(server.project["api_token"]), "host": json.dumps(server.url)})
        page = browser.new_page()
        problems, flagsvc_paths = _watch(page, server)
        page.goto(f"{origin}/snippet.html")
        out = page.evaluate(SCENARIO)
        page.wait_for_timeout(1000)
        page.close()
    finally:
        server.stop()
    assert problems == [], "\n".join(problems)
    assert "/static/array.js" in flagsvc_paths
    assert out["variant"] == _expected_variant("a1") and out["enterprise"] is True


def test_static_files_without_a_posthog_js_copy_are_a_clear_404(live_server):
    import requests

    r = requests.get(f"{live_server.url}/static/array.js", timeout=5,
                     headers={"Origin": "http://app.example"})
    assert r.status_code == 404 and "FLAGSVC_POSTHOG_JS_ASSETS" in r.json()["message"]
    assert r.headers["Access-Control-Allow-Origin"] == "http://app.example"


def test_versioned_static_paths_redirect_to_the_copy(db_path):
    import requests

    from tests.conftest import start_live_server

    server = start_live_server(db_path, POSTHOG_JS_ASSETS="https://cdn.example/ph/dist")
    try:
        for path, target in (("/static/array.js", "https://cdn.example/ph/dist/array.js"),
                             ("/static/1.449.2/surveys.js?x=1",
                              "https://cdn.example/ph/dist/surveys.js?x=1"),
                             ("/static/surveys.js?v=1.449.2",
                              "https://cdn.example/ph/dist/surveys.js?v=1.449.2")):
            r = requests.get(server.url + path, allow_redirects=False, timeout=5)
            assert r.status_code == 302 and r.headers["Location"] == target, (path, r.headers)
    finally:
        server.stop()
