// The flag editor: the form is built from the draft, every edit updates the draft and
// re-runs the blast radius (POST /api/flags/preview) before anything is saved; saving is
// PUT /api/flags/<key> with the version read, and a 409 shows what changed meanwhile.
(function () {
  "use strict";
  const {el, api, errorLines, groupLink} = window.flagsvc;
  const data = JSON.parse(document.getElementById("editor-data").textContent);
  const ed = data.editor;
  const canEdit = data.can_edit;
  const PERSON = ed.person;
  const FIELDS = ["key", "name", "description", "active", "bucket_by", "hash_namespace",
    "conditions", "variants", "payloads"];

  const clone = (x) => JSON.parse(JSON.stringify(x));
  function rulesOf(flag) {
    const out = {};
    for (const f of FIELDS) out[f] = clone(flag[f] === undefined ? null : flag[f]);
    if (out.conditions === null) out.conditions = [{properties: [], rollout_percentage: null}];
    out.variants = out.variants || [];
    out.payloads = out.payloads || {};
    out.active = out.active !== false;
    out.bucket_by = out.bucket_by || PERSON;
    return out;
  }

  let base = data.flag;  // the stored flag this edit started from (null: a new flag)
  const initial = base ? rulesOf(base) : rulesOf({
    key: "", name: "", description: "", active: true,
    bucket_by: ed.group_types[0] || PERSON,
    conditions: [{properties: [], rollout_percentage: 100}], variants: [], payloads: {}});
  const payloadText = {};  // variant -> the textarea's text (may not be valid JSON yet)
  for (const [k, v] of Object.entries(initial.payloads)) payloadText[k] = JSON.stringify(v);
  // What the form module reads and writes (the draft is replaced when a conflict loads
  // the other version).
  const state = {ed, canEdit, payloadText, draft: initial, changed: () => changed()};

  const $ = (id) => document.getElementById(id);

  const form = window.flagsvcEditorForm(state);
  const flagForm = $("flag-form");

  // ------------------------------------------------------------------ checks

  // The draft as the API takes it, and what must be fixed before it can be saved.
  function collect() {
    const problems = [];
    const payloads = {};
    const keys = state.draft.variants.length ? state.draft.variants.map((v) => v.key) : ["true"];
    document.querySelectorAll("#payloads .error-text").forEach((s) => { s.textContent = ""; });
    keys.forEach((k, i) => {
      const text = (payloadText[k] || "").trim();
      if (!text) return;
      try {
        payloads[k] = JSON.parse(text);
      } catch (e) {
        problems.push("the payload for " + k + " is not valid JSON");
        const span = $("pl" + i + "-err");
        if (span) span.textContent = "not valid JSON: " + e.message;
      }
    });
    if (!state.draft.key) problems.push("a flag needs a key");
    if (state.draft.variants.length) {
      const sum = state.draft.variants.reduce((a, v) => a + (v.weight || 0), 0);
      if (sum !== 100) problems.push("variant weights add up to " + sum + ", not 100");
      const names = state.draft.variants.map((v) => v.key);
      if (names.some((n) => !n)) problems.push("every variant needs a key");
      if (new Set(names).size !== names.length) problems.push("two variants have the same key");
    }
    state.draft.conditions.forEach((c, ci) => (c.properties || []).forEach((p, pi) => {
      if (!p.key) problems.push("condition " + (ci + 1) + ", filter " + (pi + 1) + ": choose a property");
      if (p.type === "group" && !p.group_type) {
        problems.push("condition " + (ci + 1) + ", filter " + (pi + 1) + ": choose a group type");
      }
    }));
    const out = {...clone(state.draft), payloads};
    out.conditions.forEach((c) => (c.properties || []).forEach((p) => {
      if (p.type !== "group") p.group_type = null;
    }));
    return {flag: out, problems};
  }

  function showWeights() {
    const box = $("weights");
    if (!state.draft.variants.length) { box.replaceChildren(); return; }
    const sum = state.draft.variants.reduce((a, v) => a + (v.weight || 0), 0);
    box.replaceChildren(el("span", {class: sum === 100 ? "ok-text" : "error-text"},
      "Weights add up to " + sum + " %" + (sum === 100 ? "" : " — they must add up to 100")));
  }

  function changed() {
    showWeights();
    const {problems} = collect();
    const errors = $("form-errors");
    errors.hidden = !problems.length;
    errors.replaceChildren(...problems.map((p) => el("div", {}, p)));
    if ($("save")) $("save").disabled = !canEdit || problems.length > 0;
    schedulePreview();
  }

  // ------------------------------------------------------------------ blast radius

  // One scan at a time per page: edits made while one runs ask for one more when it ends
  // (a scan reads every stored group of the type, so keystrokes must not pile them up).
  let previewTimer = null;
  let previewSeq = 0;
  let inFlight = false;
  let again = false;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(previewOnce, 250);
  }

  async function previewOnce() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      await runPreview();
    } finally {
      inFlight = false;
      if (again) { again = false; schedulePreview(); }
    }
  }

  async function runPreview() {
    const box = $("blast");
    const seq = ++previewSeq;
    const {flag, problems} = collect();
    if (flag.bucket_by === PERSON) {
      box.replaceChildren(el("p", {class: "muted"}, "Bucketed by person: the blast radius " +
        "counts groups, so choose a group type to see it."));
      box.dataset.state = "person";
      return;
    }
    if (problems.length && !flag.key) flag.key = "draft";
    box.dataset.state = "loading";
    const r = await api("POST", "/api/flags/preview", {...flag, key: flag.key || "draft"});
    if (seq !== previewSeq) return;  // an older answer than the last edit: drop it
    if (!r.ok) {
      box.dataset.state = "error";
      box.replaceChildren(el("p", {class: "error-text"}, "Cannot preview yet:"),
        el("ul", {}, errorLines(r.data).map((l) => el("li", {}, l))));
      return;
    }
    const p = r.data;
    const pct = p.total ? Math.round(1000 * p.enabled / p.total) / 10 : 0;
    const rows = Object.entries(p.counts).map(([label, n]) => el("tr", {"data-variant": label},
      el("th", {scope: "row"}, label === "false" ? "off" : label === "true" ? "on" : label),
      el("td", {class: "num"}, String(n)),
      el("td", {}, ...(p.sample[label] || []).flatMap((k, i) =>
        [i ? ", " : "", groupLink(p.bucket_by, k)]))));
    box.replaceChildren(
      el("p", {class: "big"}, el("span", {id: "blast-enabled"}, String(p.enabled)), " of ",
        el("span", {id: "blast-total"}, String(p.total)), " " + p.bucket_by + " groups get it (" +
        pct + " %)" + (p.complete ? "" : " — scan cut short, partial figures")),
      el("table", {class: "list compact"}, el("thead", {}, el("tr", {},
        el("th", {scope: "col"}, "Answer"), el("th", {scope: "col"}, "Groups"),
        el("th", {scope: "col"}, "Sample keys"))), el("tbody", {}, rows)));
    box.dataset.state = "ready";
    box.dataset.enabled = String(p.enabled);
  }

  // ------------------------------------------------------------------ save, conflicts

  function ask(lines, yes) {
    const dialog = $("confirm");
    $("confirm-ok").textContent = yes || "Yes, save";
    $("confirm-text").replaceChildren(...lines.map((l) => el("li", {}, l)));
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  function rolloutOf(c) {
    return c.rollout_percentage === null || c.rollout_percentage === undefined
      ? 100 : c.rollout_percentage;
  }

  function risky(flag) {
    if (!base) return [];
    const lines = [];
    if (base.active !== false && !flag.active) {
      lines.push("Switch " + base.key + " off: every request gets false.");
    }
    const was = rulesOf(base).conditions;
    flag.conditions.forEach((c, i) => {
      const before = was[i] ? rolloutOf(was[i]) : null;
      if (before !== null && before !== rolloutOf(c)) {
        lines.push("Change the rollout of condition " + (i + 1) + " from " + before + " % to " +
          rolloutOf(c) + " %.");
      }
    });
    return lines;
  }

  function status(text, kind) {
    const s = $("form-status");
    s.textContent = text;
    s.className = kind || "";
  }

  async function save(event, force) {
    if (event) event.preventDefault();
    const {flag, problems} = collect();
    if (problems.length) { status("Fix the problems above first.", "error-text"); return; }
    const lines = force ? [] : risky(flag);
    if (lines.length && !(await ask(lines))) { status("Not saved."); return; }
    status("Saving…");
    const r = base ? await api("PUT", "/api/flags/" + encodeURIComponent(base.key),
      {...flag, version: base.version}) : await api("POST", "/api/flags", flag);
    if (r.status === 409 && base) { await conflict(flag); return; }
    if (!r.ok) {
      status("Not saved: " + errorLines(r.data).join(" · "), "error-text");
      return;
    }
    if (!base) { window.location.assign("/ui/flags/" + encodeURIComponent(r.data.key)); return; }
    base = r.data;
    $("conflict").hidden = true;
    $("version-label").textContent = "version " + base.version;
    status("Saved version " + base.version + ".", "ok-text");
  }

  function show(value) {
    return value === undefined ? "(none)" : JSON.stringify(value);
  }

  async function conflict(mine) {
    const key = base.key;
    const [theirs, audit] = await Promise.all([
      api("GET", "/api/flags/" + encodeURIComponent(key)),
      api("GET", "/api/audit?limit=1&flag_id=" + encodeURIComponent(key))]);
    if (!theirs.ok) { status("Not saved: the flag changed and cannot be read.", "error-text"); return; }
    const last = audit.ok && audit.data.entries[0];
    $("conflict-who").textContent = "Version " + theirs.data.version + " was saved" +
      (last ? " by " + (last.actor || "someone") : "") + " after you opened version " +
      base.version + ". Your edits are not saved.";
    const was = rulesOf(base);
    const now = rulesOf(theirs.data);
    const changes = FIELDS.filter((f) => JSON.stringify(was[f]) !== JSON.stringify(now[f]));
    $("conflict-changes").replaceChildren(el("table", {class: "list compact"},
      el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "Field"),
        el("th", {scope: "col"}, "When you opened it"), el("th", {scope: "col"}, "Now"),
        el("th", {scope: "col"}, "Yours"))),
      el("tbody", {}, changes.map((f) => el("tr", {"data-field": f}, el("th", {scope: "row"}, f),
        el("td", {}, el("code", {}, show(was[f]))), el("td", {}, el("code", {}, show(now[f]))),
        el("td", {}, el("code", {}, show(mine[f]))))))));
    $("conflict").hidden = false;
    $("conflict").scrollIntoView({block: "nearest"});
    status("Not saved: someone else changed this flag.", "error-text");
    $("conflict-theirs").onclick = () => {
      base = theirs.data;
      state.draft = rulesOf(base);
      for (const k of Object.keys(payloadText)) delete payloadText[k];
      for (const [k, v] of Object.entries(state.draft.payloads)) payloadText[k] = JSON.stringify(v);
      $("conflict").hidden = true;
      $("version-label").textContent = "version " + base.version;
      form.renderAll();
      status("Loaded version " + base.version + ".");
    };
    $("conflict-mine").onclick = () => {
      base = theirs.data;
      $("conflict").hidden = true;
      save(null, false);
    };
  }

  async function remove() {
    if (!(await ask(["Delete " + base.key + ": it evaluates to false for everyone. Its key " +
      "and history are kept, and it can be restored."], "Yes, delete"))) return;
    const r = await api("DELETE", "/api/flags/" + encodeURIComponent(base.key), undefined,
      {"If-Match": String(base.version)});
    if (r.status === 409) { await conflict(state.draft); return; }
    if (!r.ok) { status("Not deleted: " + errorLines(r.data).join(" · "), "error-text"); return; }
    window.location.assign("/ui/?state=deleted");
  }

  async function restore() {
    const r = await api("POST", "/api/flags/" + encodeURIComponent(base.key) + "/restore");
    if (!r.ok) { status("Not restored: " + errorLines(r.data).join(" · "), "error-text"); return; }
    window.location.reload();
  }

  // ------------------------------------------------------------------ explain

  async function explain(event) {
    event.preventDefault();
    const box = $("explain");
    const {flag} = collect();
    const groups = {};
    if ($("x-type").value && $("x-key").value.trim()) groups[$("x-type").value] = $("x-key").value.trim();
    const body = {flag: {...flag, key: flag.key || "draft"}, groups};
    if ($("x-distinct").value.trim()) body.distinct_id = $("x-distinct").value.trim();
    const r = await api("POST", "/api/flags/explain", body);
    if (!r.ok) {
      box.replaceChildren(el("ul", {class: "error-text"}, errorLines(r.data).map((l) => el("li", {}, l))));
      return;
    }
    const x = r.data;
    const path = (x.inferred_from || []).map((step) => step.join(" ")).join(" → ");
    const facts = [
      ["Answer", JSON.stringify(x.value)], ["Reason", x.reason +
        (x.condition_index !== null && x.condition_index !== undefined
          ? " (condition " + (x.condition_index + 1) + ")" : "")],
      ["Bucketed by", x.bucket_by], ["Key hashed", x.group_key === null ? "(none)" : x.group_key],
      ["Found through", path || "given in the request"],
      ["Bucket", x.bucket === null || x.bucket === undefined ? "-" : String(x.bucket)],
    ];
    const conditions = (x.conditions || []).map((c) => el("li", {},
      "Condition " + (c.index + 1) + ": " + (c.matched ? "matched" : "did not match") +
      (c.bucket !== null && c.bucket !== undefined ? ", bucket " + c.bucket + " vs rollout " +
        c.rollout_percentage + " % (" + (c.in_rollout ? "in" : "out") + ")" : ""),
      el("ul", {}, (c.properties || []).map((p) => el("li", {},
        (p.group_type ? p.group_type + "." : "") + p.key + " " + (p.negate ? "not " : "") +
        p.operator + " " + JSON.stringify(p.value) + ": had " + JSON.stringify(p.actual) +
        " → " + (p.matched ? "yes" : "no"))))));
    box.replaceChildren(el("dl", {class: "facts"}, facts.flatMap(([k, v]) =>
      [el("dt", {}, k), el("dd", {}, v)])), el("ul", {}, conditions));
  }

  // ------------------------------------------------------------------ wiring

  $("add-condition").addEventListener("click", () => {
    state.draft.conditions.push({properties: [], rollout_percentage: 100, variant: null});
    form.renderConditions(); changed();
  });
  $("add-variant").addEventListener("click", () => {
    const n = state.draft.variants.length;
    state.draft.variants.push({key: n ? "variant-" + (n + 1) : "control", weight: n ? 0 : 100});
    form.renderVariants(); form.renderConditions(); form.renderPayloads(); changed();
  });
  flagForm.addEventListener("submit", (e) => save(e, false));
  $("explain-form").addEventListener("submit", explain);
  if ($("delete")) $("delete").addEventListener("click", remove);
  if ($("restore")) $("restore").addEventListener("click", restore);
  form.renderAll();
  flagForm.dataset.ready = "true";  // (tests wait for it before typing)
})();
