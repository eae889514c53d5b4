// The flag editor: the form is built from the draft, every edit updates the draft and
// re-runs the blast radius (POST /api/flags/preview: groups of the bucket type, or persons)
// before anything is saved; saving is PUT /api/flags/<key> with the version read, after a
// confirmation listing every change of who gets what (editor-merge.js compares), and a 409
// shows what changed meanwhile and merges it with the draft, three ways.
(function () {
  "use strict";
  const {el, api, errorLines, groupLink, personLink} = window.flagsvc;
  const {merge3, audienceChanges} = window.flagsvcMerge;
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
  // An edit kept over a sign-in (a save answered 401, or 403 for a CSRF token a sign-in in
  // another tab replaced): the draft, the stored version it was edited from, the payload
  // texts, in this tab's sessionStorage under the flag's address, restored when it reopens.
  const STASH = "flagsvc-draft:" + window.location.pathname;
  let restoredNote = null;
  try {
    const kept = JSON.parse(window.sessionStorage.getItem(STASH) || "null");
    window.sessionStorage.removeItem(STASH);
    if (kept && (!base || !base.deleted) && (!base || (kept.base && kept.base.key === base.key))) {
      if (base) base = kept.base;  // the version the edit started from: a save meets theirs
      Object.assign(initial, kept.draft);
      for (const k of Object.keys(payloadText)) delete payloadText[k];
      Object.assign(payloadText, kept.payloadText || {});
      restoredNote = "Your unsaved edits from before you signed in again are back in the form " +
        "(not saved yet): review them, then save.";
    } else if (kept) {
      restoredNote = "Your unsaved edits could not be restored: this flag is deleted.";
    }
  } catch (e) { /* no sessionStorage, or not ours: nothing to restore */ }
  function stash() {
    try {
      window.sessionStorage.setItem(STASH, JSON.stringify({base, draft: state.draft,
        payloadText}));
      return true;
    } catch (e) { return false; }
  }
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
    if ($("save")) {  // (a flag deleted meanwhile is restored first, never saved over)
      $("save").disabled = !canEdit || problems.length > 0 || Boolean(pending && pending.gone);
    }
    if (pending && !pending.gone && !problems.length) showConflict();  // the merge follows the draft
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

  // The blast radius of a flag: {text, rows} from POST /api/flags/preview, or {error}.
  async function blastOf(flag) {
    const r = await api("POST", "/api/flags/preview", {...flag, key: flag.key || "draft"});
    if (!r.ok) return {error: errorLines(r.data)};
    const p = r.data;
    const persons = p.bucket_by === PERSON;
    const pct = p.total ? Math.round(1000 * p.enabled / p.total) / 10 : 0;
    const label = (v) => (v === "false" ? "off" : v === "true" ? "on" : v);
    return {p, persons, pct, label,
      text: p.enabled + " of " + p.total + (persons ? " persons" : " " + p.bucket_by + " groups") +
        " (" + pct + " %)" + (p.enabled && Object.keys(p.counts).length > 2 ? ": " +
        Object.entries(p.counts).filter(([v]) => v !== "false")
          .map(([v, n]) => label(v) + " " + n).join(", ") : "")};
  }

  async function runPreview() {
    const box = $("blast");
    const seq = ++previewSeq;
    const {flag} = collect();
    box.dataset.state = "loading";
    const b = await blastOf(flag);
    if (seq !== previewSeq) return;  // an older answer than the last edit: drop it
    if (b.error) {
      box.dataset.state = "error";
      box.replaceChildren(el("p", {class: "error-text"}, "Cannot preview yet:"),
        el("ul", {}, b.error.map((l) => el("li", {}, l))));
      return;
    }
    const p = b.p;
    const link = b.persons ? personLink : (k) => groupLink(p.bucket_by, k);
    const rows = Object.entries(p.counts).map(([v, n]) => el("tr", {"data-variant": v},
      el("th", {scope: "row"}, b.label(v)),
      el("td", {class: "num"}, String(n)),
      el("td", {}, ...(p.sample[v] || []).flatMap((k, i) => [i ? ", " : "", link(k)]))));
    box.replaceChildren(
      el("p", {class: "big"}, el("span", {id: "blast-enabled"}, String(p.enabled)), " of ",
        el("span", {id: "blast-total"}, String(p.total)),
        (b.persons ? " persons" : " " + p.bucket_by + " groups") + " get it (" + b.pct + " %)" +
        (p.complete ? "" : " — scan cut short, partial figures")),
      b.persons ? el("p", {class: "muted", id: "blast-unit"}, "Bucketed by person: every " +
        "stored person, hashed on their first distinct id, with the groups they were last " +
        "seen with.") : "",
      el("table", {class: "list compact"}, el("thead", {}, el("tr", {},
        el("th", {scope: "col"}, "Answer"), el("th", {scope: "col"}, b.persons ? "Persons" : "Groups"),
        el("th", {scope: "col"}, b.persons ? "Sample distinct ids" : "Sample keys"))),
      el("tbody", {}, rows)));
    // A condition bucketed on another type than the flag's is not met by the flag's groups
    // (they name no such level): each is counted on its own type, that condition alone.
    const own = flag.conditions.map((c, ci) => [c, ci])
      .filter(([c]) => c.bucket_by && c.bucket_by !== flag.bucket_by);
    if (own.length) {
      const items = [];
      for (const [c, ci] of own) {
        const alone = await blastOf({...flag, bucket_by: c.bucket_by,
          conditions: [{...c, bucket_by: null}]});
        if (seq !== previewSeq) return;
        items.push(el("li", {"data-condition": ci}, "Condition " + (ci + 1) + " (bucketed by " +
          c.bucket_by + "), on its own: " + (alone.error ? "cannot be counted (" +
          alone.error.join(" · ") + ")" : alone.text)));
      }
      box.append(el("div", {id: "blast-conditions"}, el("p", {class: "muted"},
        "The figures above evaluate each " + (b.persons ? "person" : p.bucket_by + " group") +
        ": a condition bucketed by another type matches there only where that type is found " +
        "above it in the hierarchy. Each such condition, counted on its own type:"), el("ul", {}, items)));
    }
    box.dataset.state = "ready";
    box.dataset.unit = b.persons ? "persons" : "groups";
    box.dataset.enabled = String(p.enabled);
  }

  // ------------------------------------------------------------------ save, conflicts

  // A confirmation: the lines, and, with `radius` (the flags before and after), the blast
  // radius of each, filled in when the previews answer.
  let askSeq = 0;
  function ask(lines, yes, radius) {
    const dialog = $("confirm");
    const seq = ++askSeq;
    dialog.returnValue = "";  // (a close without a button, e.g. Escape, keeps the last one)
    $("confirm-ok").textContent = yes || "Yes, save";
    $("confirm-text").replaceChildren(...lines.map((l) => el("li", {}, l)));
    const box = $("confirm-radius");
    box.replaceChildren();
    box.hidden = !radius;
    if (radius) {
      box.textContent = "Blast radius: computing…";
      Promise.all(radius.map(blastOf)).then(([before, after]) => {
        if (seq !== askSeq) return;  // an answer for a confirmation since closed
        const text = (b) => (b.error ? "cannot be computed (" + b.error.join(" · ") + ")" : b.text);
        box.replaceChildren(el("strong", {}, "Blast radius"), el("br"),
          el("span", {id: "radius-before"}, "Now: " + text(before)), el("br"),
          el("span", {id: "radius-after"}, "After this save: " + text(after)));
        box.dataset.state = "ready";
      });
      box.dataset.state = "loading";
    }
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  function status(text, kind) {
    const s = $("form-status");
    s.textContent = text;
    s.className = kind || "";
  }

  async function save(event) {
    if (event) event.preventDefault();
    const {flag, problems} = collect();
    if (problems.length) { status("Fix the problems above first.", "error-text"); return; }
    const before = base && rulesOf(base);
    const lines = before ? audienceChanges(before, rulesOf(flag)) : [];
    if (lines.length && !(await ask(lines, null, [before, flag]))) { status("Not saved."); return; }
    status("Saving…");
    const r = base ? await api("PUT", "/api/flags/" + encodeURIComponent(base.key),
      {...flag, version: base.version}) : await api("POST", "/api/flags", flag);
    if (r.status === 409 && base) { await conflict(false, r.data); return; }
    const csrfGone = r.status === 403 && r.data && /CSRF/.test(r.data.message || "");
    if (r.status === 401 || csrfGone) {  // signed out (or in again elsewhere): keep the edit
      const kept = stash();
      status((r.status === 401 ? "Signed out: your session expired. " : "You signed in again " +
        "in another tab. ") + (kept ? "Your edits are kept; " : "") + "taking you to sign in…",
      "error-text");
      const here = window.location.pathname;
      window.location.assign(r.status === 401 ? "/ui/signin?next=" + encodeURIComponent(here) : here);
      return;
    }
    if (!r.ok) {
      status("Not saved: " + errorLines(r.data).join(" · "), "error-text");
      return;
    }
    if (!base) { window.location.assign("/ui/flags/" + encodeURIComponent(r.data.key)); return; }
    base = r.data;
    pending = null;
    $("conflict").hidden = true;
    $("version-label").textContent = "version " + base.version;
    status("Saved version " + base.version + ".", "ok-text");
  }

  // The form shows `rules`, edited from the stored version `stored`.
  function load(stored, rules) {
    pending = null;
    base = stored;
    state.draft = rules;
    for (const k of Object.keys(payloadText)) delete payloadText[k];
    for (const [k, v] of Object.entries(rules.payloads)) payloadText[k] = JSON.stringify(v);
    $("conflict").hidden = true;
    $("version-label").textContent = "version " + base.version;
    form.renderAll();
  }

  const OUTCOME = {theirs: "theirs", mine: "yours", same: "alike"};  // (the summary says why)

  // A refused stale save (or delete): what changed since the version this edit started from,
  // merged three ways with `mine`; conflicts are chosen per field before the merge is saved.
  // A refused stale save (or delete) leaves `pending`: the stored version it met, while the
  // panel shows what changed since the version this edit started from, merged three ways
  // with the draft (again after each edit made meanwhile); conflicts are chosen per field.
  let pending = null;

  // `refused`: the API's answer to the refused write (its message is shown as it is).
  async function conflict(deleting, refused) {
    const key = base.key;
    const [theirs, audit] = await Promise.all([
      api("GET", "/api/flags/" + encodeURIComponent(key)),
      api("GET", "/api/audit?limit=1&flag_id=" + encodeURIComponent(key))]);
    const said = refused && refused.message ? " (" + refused.message + ")" : "";
    if (!theirs.ok) {
      status("Not saved" + said + ": the flag changed and cannot be read.", "error-text");
      return;
    }
    const last = audit.ok && audit.data.entries[0];
    const gone = theirs.data.deleted === true;
    pending = {theirs: theirs.data, deleting, choices: {}, merged: null, gone};
    const by = last ? " by " + (last.actor || "someone") : "";
    const at = last && last.created_at ? " at " + new Date(last.created_at)
      .toISOString().slice(0, 16).replace("T", " ") + " UTC" : "";
    $("conflict-title").textContent = gone ? "Someone else deleted this flag"
      : "Someone else saved this flag";
    $("conflict-who").textContent = gone
      ? "This flag was deleted" + by + at + " (version " + theirs.data.version + ") after you " +
        "opened version " + base.version + ". Your edits are not saved; a deleted flag " +
        "cannot be edited until it is restored."
      : "Version " + theirs.data.version + " was saved" + by + at + " after you opened version " +
        base.version + ". " + (deleting ? "The flag is not deleted." : "Your edits are not saved yet.");
    $("conflict-merge").hidden = $("conflict-review").hidden = deleting || gone;
    $("conflict-merge").disabled = $("conflict-review").disabled = gone;
    $("conflict-restore").hidden = !(gone && canEdit);
    if ($("save")) $("save").disabled = gone || $("save").disabled;
    $("conflict-theirs").textContent = gone ? "Discard my edits, show the deleted flag"
      : "Discard my edits, load theirs";
    if (gone) {
      $("conflict-changes").replaceChildren();
      $("conflict-left").textContent = "";
    } else {
      showConflict();
    }
    $("conflict").hidden = false;
    $("conflict").scrollIntoView({block: "nearest"});
    $("conflict-title").focus();
    status((deleting ? "Not deleted" : "Not saved") + said + (gone ? ": someone else deleted this flag."
      : ": someone else changed this flag."), "error-text");
    $("conflict-theirs").onclick = () => {
      if (pending.gone) { window.location.reload(); return; }  // the page of a deleted flag
      load(pending.theirs, rulesOf(pending.theirs));
      status("Loaded version " + base.version + ".");
    };
    $("conflict-restore").onclick = () => { base = pending.theirs; restore(); };
    $("conflict-review").onclick = () => {
      load(pending.theirs, pending.merged.build(pending.choices));
      status("The merge with version " + base.version + " is in the form, not saved yet.");
    };
    $("conflict-merge").onclick = () => {
      load(pending.theirs, pending.merged.build(pending.choices));
      save(null);
    };
  }

  function showConflict() {
    const {theirs, choices} = pending;
    const merged = pending.merged = merge3(rulesOf(base), rulesOf(theirs), rulesOf(collect().flag));
    const conflicts = merged.rows.filter((r) => r.outcome === "conflict");
    const names = (outcome) => merged.rows.filter((r) => r.outcome === outcome)
      .map((r) => r.field.label).join(", ");
    const summary = [["They changed", names("theirs")], ["You changed", names("mine")],
      ["Both changed alike", names("same")], ["Both changed differently — choose below", names("conflict")]]
      .filter(([, v]) => v).map(([k, v]) => el("li", {}, k + ": " + v));
    const heads = ["You opened (v" + base.version + ")", "Theirs (v" + theirs.version + ")",
      "Yours", "Merged"];  // (each cell says its column too: at a phone's width rows stack)
    const code = (r, v, i) => el("td", {"data-label": heads[i]}, el("code", {}, r.show(v)));
    const picker = (r, ri) => el("fieldset", {class: "pick"},
      el("legend", {class: "sr-only"}, "Keep which " + r.field.label.toLowerCase() + "?"),
      ...["theirs", "mine"].map((side) => el("label", {class: "check"},
        el("input", {type: "radio", name: "pick-" + ri, value: side, id: "pick-" + ri + "-" + side,
          checked: choices[r.field.name] === side,
          on: {change: () => { choices[r.field.name] = side; ready(); }}}),
        side === "theirs" ? "keep theirs" : "keep mine")));
    const rows = merged.rows.map((r, ri) => el("tr", {"data-field": r.field.name,
      "data-outcome": r.outcome}, el("th", {scope: "row"}, r.field.label),
    code(r, r.base, 0), code(r, r.theirs, 1), code(r, r.mine, 2),
    el("td", {"data-label": heads[3]}, r.outcome === "conflict" ? picker(r, ri) : OUTCOME[r.outcome])));
    $("conflict-changes").replaceChildren(el("ul", {id: "conflict-summary"}, summary),
      el("div", {class: "table-wrap"}, el("table", {class: "list merge"},
        el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "Field"),
          ...heads.map((h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, rows))));
    function ready() {
      const left = conflicts.filter((r) => !choices[r.field.name]).length;
      $("conflict-merge").disabled = $("conflict-review").disabled = left > 0;
      $("conflict-left").textContent = left ? left + " conflict" + (left > 1 ? "s" : "") +
        " left to choose." : "";
    }
    ready();
  }

  async function remove() {
    if (!(await ask(["Delete " + base.key + ": it evaluates to false for everyone. Its key " +
      "and history are kept, and it can be restored."], "Yes, delete"))) return;
    const r = await api("DELETE", "/api/flags/" + encodeURIComponent(base.key), undefined,
      {"If-Match": String(base.version)});
    if (r.status === 409) { await conflict(true, r.data); return; }
    if (!r.ok) { status("Not deleted: " + errorLines(r.data).join(" · "), "error-text"); return; }
    window.location.assign("/ui/?state=deleted");
  }

  // Restoring switches the flag back on as its last version defined it: asked first, with
  // the blast radius before (a deleted flag is off for everyone) and after, and saved only
  // against the version read (If-Match).
  async function restore() {
    const after = rulesOf(base);
    const lines = ["Restore " + base.key + ": it is evaluated again as version " + base.version +
      " defines it" + (after.active ? "." : " (inactive: false for everyone until switched on).")];
    if (!(await ask(lines, "Yes, restore", [{...after, active: false}, after]))) {
      status("Not restored.");
      return;
    }
    const r = await api("POST", "/api/flags/" + encodeURIComponent(base.key) + "/restore",
      undefined, {"If-Match": String(base.version)});
    if (!r.ok) { status("Not restored: " + errorLines(r.data).join(" · "), "error-text"); return; }
    window.location.reload();
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
  flagForm.addEventListener("submit", (e) => save(e));
  $("explain-form").addEventListener("submit", window.flagsvcExplain(() => collect().flag));
  if ($("delete")) $("delete").addEventListener("click", remove);
  if ($("restore")) $("restore").addEventListener("click", restore);
  form.renderAll();
  if (restoredNote) status(restoredNote, base && base.deleted ? "error-text" : "ok-text");
  flagForm.dataset.ready = "true";  // (tests wait for it before typing)
})();
