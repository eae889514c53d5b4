"""The stock Node clients against a real flagsvc: posthog-node (with and without a personal
API key) and @openfeature/server-sdk with @openfeature/ofrep-provider."""

from __future__ import annotations

import json

import pytest

from tests.capabilities import run_node
from tests.test_decide import _expected_variant, _seed


@pytest.fixture
def server(live_server):
    _seed(live_server.store, live_server.project["id"])
    return live_server


OFREP = """
const {OpenFeature} = require('@openfeature/server-sdk');
const {OFREPProvider} = require('@openfeature/ofrep-provider');
(async () => {
  const cfg = JSON.parse(process.env.CFG);
  await OpenFeature.setProviderAndWait(new OFREPProvider({
    baseUrl: cfg.url, headers: [['Authorization', 'Bearer ' + cfg.token]]}));
  const client = OpenFeature.getClient();
  const ctx = {groups: {project: 'p1'}};
  const s = await client.getStringDetails('ab-test', 'none', ctx);
  const b = await client.getBooleanDetails('enterprise-only', false, ctx);
  const missing = await client.getBooleanDetails('no-such-flag', true, ctx);
  const person = await client.getBooleanValue('acme-people', false, {targetingKey: 'alice'});
  const mismatch = await client.getNumberDetails('ab-test', 7, ctx);
  const nokey = await client.getBooleanDetails('acme-people', true, ctx);
  const invalid = await client.getBooleanDetails('ab-test', true, {groups: ['p1']});
  await OpenFeature.close();
  console.log(JSON.stringify({s, b, missing, person, mismatch, nokey, invalid}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_node_openfeature_ofrep_provider(server):
    cfg = {"url": server.url, "token": server.project["api_token"]}
    out = run_node(OFREP, env={"CFG": json.dumps(cfg)})
    variant = _expected_variant("a1")
    assert out["s"]["value"] == variant and out["s"]["variant"] == variant
    assert out["s"]["reason"] == "SPLIT"
    assert out["s"]["flagMetadata"]["payload"] == json.dumps(
        {"color": "blue" if variant == "control" else "green"}, separators=(",", ":"))
    assert out["b"]["value"] is True and out["b"]["reason"] == "TARGETING_MATCH"
    assert out["missing"]["value"] is True and out["missing"]["errorCode"] == "FLAG_NOT_FOUND"
    assert out["person"] is True
    assert out["mismatch"]["value"] == 7 and out["mismatch"]["errorCode"] == "TYPE_MISMATCH"
    assert out["nokey"]["value"] is True
    assert out["nokey"]["errorCode"] == "TARGETING_KEY_MISSING"
    assert out["invalid"]["value"] is True and out["invalid"]["errorCode"] == "INVALID_CONTEXT"


POSTHOG_NODE = """
const {PostHog} = require('posthog-node');
(async () => {
  const cfg = JSON.parse(process.env.CFG);
  const errors = [];
  const opts = {host: cfg.url, flushAt: 1, flushInterval: 0};
  if (cfg.personal) { opts.personalApiKey = cfg.personal; opts.featureFlagsPollingInterval = 500; }
  const ph = new PostHog(cfg.token, opts);
  ph.on('error', e => errors.push(String(e && e.message || e)));
  const groups = {project: 'p1'};
  const variant = await ph.getFeatureFlag('ab-test', 'alice', {groups});
  const payload = await ph.getFeatureFlagPayload('ab-test', 'alice', variant, {groups});
  const on = await ph.isFeatureEnabled('enterprise-only', 'alice', {groups});
  // The seed's PostHog (Node.js) form of an event attributed to the project.
  ph.capture({distinctId: 'alice', event: 'Task Completed', properties: {task_id: 't1'}, groups});
  await new Promise(r => setTimeout(r, 1500));
  await ph.shutdown();
  console.log(JSON.stringify({variant, payload, on, errors}));
})().catch(e => { console.error(e); process.exit(1); });
"""


@pytest.mark.parametrize("personal", [False, True])
def test_posthog_node(server, personal):
    cfg = {"url": server.url, "token": server.project["api_token"],
           "personal": "phx_anything" if personal else None}
    out = run_node(POSTHOG_NODE, env={"CFG": json.dumps(cfg)})
    variant = _expected_variant("a1")
    assert out["variant"] == variant
    assert out["payload"] == {"color": "blue" if variant == "control" else "green"}
    assert out["on"] is True
    assert out["errors"] == []
    rows = server.store.conn().execute(
        "SELECT event, groups FROM events WHERE project_id = ? AND distinct_id = 'alice'",
        [server.project["id"]]).fetchall()
    assert ("Task Completed", {"project": "p1"}) in [
        (e, json.loads(g or "null")) for e, g in rows], rows
    assert "$feature_flag_called" in {e for e, _ in rows}


def test_posthog_node_local_evaluation_poll_gets_no_definitions(server):
    """What posthog-node (5.74) polls with a personal API key: 200, empty, then 304."""
    import requests

    url = f"{server.url}/flags/definitions"
    r = requests.get(url, params={"token": server.project["api_token"], "send_cohorts": ""},
                     headers={"Authorization": "Bearer phx_anything"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"flags": [], "group_type_mapping": {},
                                                  "cohorts": {}}
    again = requests.get(url, params={"token": server.project["api_token"]}, timeout=10,
                         headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    assert requests.get(url, params={"token": "nope"}, timeout=10).status_code == 401
