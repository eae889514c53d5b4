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

  // What input each operator's value takes.
  const KINDS = {
    exact: "list", is_not: "list", in: "list", not_in: "list", flag_evaluates_to: "text",
    contains: "text", icontains: "text", not_icontains: "text", str_contains: "text",
    starts_with: "text", str_starts_with: "text", ends_with: "text", str_ends_with: "text",
    regex: "regex", not_regex: "regex",
    gt: "number", gte: "number", lt: "number", lte: "number", num_eq: "number",
    num_gt: "number", num_gte: "number", num_lt: "number", num_lte: "number",
    is_set: "none", is_not_set: "none",
    date_before: "date", date_after: "date", is_date_before: "date", is_date_after: "date",
    semver_eq: "semver", semver_gt: "semver", semver_gte: "semver", semver_lt: "semver",
    semver_lte: "semver", in_cidr: "cidr",
  };
  const HINTS = {
    list: "values, comma-separated", text: "text", regex: "regular expression (RE2)",
    number: "a number", date: "2026-01-31 or -30d", semver: "1.2.3", cidr: "10.0.0.0/8",
  };

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
  let draft = base ? rulesOf(base) : rulesOf({
    key: "", name: "", description: "", active: true,
    bucket_by: ed.group_types[0] || PERSON,
    conditions: [{properties: [], rollout_percentage: 100}], variants: [], payloads: {}});
  const payloadText = {};  // variant -> the textarea's text (may not be valid JSON yet)
  for (const [k, v] of Object.entries(draft.payloads)) payloadText[k] = JSON.stringify(v);

  const $ = (id) => document.getElementById(id);
  const form = $("flag-form");

  // ------------------------------------------------------------------ form <-> draft

  function bindBasics() {
    $("f-key").value = draft.key;
    $("f-name").value = draft.name || "";
    $("f-description").value = draft.description || "";
    $("f-active").checked = draft.active;
    $("f-key").oninput = (e) => { draft.key = e.target.value.trim(); changed(); };
    $("f-name").oninput = (e) => { draft.name = e.target.value; changed(); };
    $("f-description").oninput = (e) => { draft.description = e.target.value; changed(); };
    $("f-active").onchange = (e) => { draft.active = e.target.checked; changed(); };
    const bucket = $("f-bucket");
    bucket.replaceChildren(el("option", {value: PERSON}, "$person (the distinct id)"),
      ...ed.group_types.map((t) => el("option", {value: t}, t)));
    if (![PERSON, ...ed.group_types].includes(draft.bucket_by)) {
      bucket.append(el("option", {value: draft.bucket_by}, draft.bucket_by + " (not a type yet)"));
    }
    bucket.value = draft.bucket_by;
    bucket.onchange = (e) => { draft.bucket_by = e.target.value; renderHierarchy(); changed(); };
    const xt = $("x-type");
    xt.replaceChildren(el("option", {value: ""}, "(none)"),
      ...ed.group_types.map((t) => el("option", {value: t}, t)));
  }

  // bucket_by against the hierarchy: the chain of types from the most specific to the top,
  // with the bucket type marked, and which levels a request may name instead.
  function renderHierarchy() {
    const box = $("hierarchy");
    if (draft.bucket_by === PERSON) {
      box.replaceChildren("Each person (distinct id) is bucketed on their own.");
      return;
    }
    const parentOf = {};
    for (const [child, parent] of ed.hierarchy) parentOf[child] = parent;
    const children = Object.keys(parentOf);
    let bottom = draft.bucket_by;  // walk down to the most specific type below the bucket type
    for (let guard = 0; guard < 10; guard++) {
      const below = children.find((c) => parentOf[c] === bottom);
      if (!below) break;
      bottom = below;
    }
    const chain = [];
    for (let t = bottom, guard = 0; t && guard < 10 && !chain.includes(t); guard++) {
      chain.push(t);
      t = parentOf[t];
    }
    const parts = [];
    chain.forEach((t, i) => {
      if (i) parts.push(" → ");
      parts.push(t === draft.bucket_by ? el("strong", {}, t + " (bucketed here)") : t);
    });
    const below = chain.slice(0, chain.indexOf(draft.bucket_by));
    box.replaceChildren("Hierarchy: ", ...parts,
      below.length ? el("span", {class: "muted"}, ". A request naming a " + below.join(" or ") +
        " is bucketed on its " + draft.bucket_by + ".") : "");
  }

  function labelled(id, label, input) {
    return [el("label", {for: id}, label), input];
  }

  let uid = 0;
  function renderConditions() {
    const box = $("conditions");
    box.replaceChildren(...draft.conditions.map((c, ci) => {
      const id = "c" + ci;
      const rollout = c.rollout_percentage === null || c.rollout_percentage === undefined
        ? 100 : c.rollout_percentage;
      const number = el("input", {id: id + "-rollout", type: "number", min: 0, max: 100,
        step: 1, value: rollout, class: "short", "aria-describedby": id + "-rollout-hint"});
      const range = el("input", {type: "range", min: 0, max: 100, step: 1, value: rollout,
        "aria-label": "rollout percentage of condition " + (ci + 1), tabindex: -1});
      const setRollout = (v) => {
        const n = Math.max(0, Math.min(100, Math.round(Number(v) || 0)));
        c.rollout_percentage = n;
        number.value = n; range.value = n;
        changed();
      };
      number.addEventListener("input", () => setRollout(number.value));
      range.addEventListener("input", () => setRollout(range.value));
      const variant = el("select", {id: id + "-variant", on: {change: (e) => {
        c.variant = e.target.value || null; changed(); }}},
      el("option", {value: ""}, "by hash (weights)"),
      ...draft.variants.map((v) => el("option", {value: v.key}, v.key)));
      variant.value = c.variant || "";
      return el("div", {class: "condition", "data-condition": ci},
        el("div", {class: "row-head"}, el("h3", {}, "Condition " + (ci + 1)),
          el("button", {type: "button", class: "secondary small",
            "aria-label": "remove condition " + (ci + 1),
            on: {click: () => { draft.conditions.splice(ci, 1); renderConditions(); changed(); }}},
          "Remove")),
        el("div", {class: "filters-list"}, (c.properties || []).map((p, pi) =>
          propertyRow(c, p, pi, id + "p" + pi))),
        el("button", {type: "button", class: "secondary small", on: {click: () => {
          c.properties = c.properties || [];
          c.properties.push({type: ed.group_types.length ? "group" : "person",
            group_type: ed.group_types[0] || null, key: "", operator: "exact", value: []});
          renderConditions(); changed();
        }}}, "Add property filter"),
        el("div", {class: "rollout"},
          el("label", {for: id + "-rollout"}, "Rollout %"), number, range,
          el("span", {id: id + "-rollout-hint", class: "muted"},
            "of the groups (or persons) that match")),
        draft.variants.length ? el("div", {}, ...labelled(id + "-variant", "Variant", variant))
          : "");
    }));
    if (!draft.conditions.length) {
      box.append(el("p", {class: "muted"}, "No condition: the flag is off for everyone."));
    }
  }

  function propertyRow(c, p, pi, id) {
    const remove = () => { c.properties.splice(pi, 1); renderConditions(); changed(); };
    const type = el("select", {id: id + "-type", on: {change: (e) => {
      p.type = e.target.value;
      if (p.type === "group" && !p.group_type) p.group_type = ed.group_types[0] || null;
      if (p.type === "flag") { p.operator = "exact"; p.value = true; }
      renderConditions(); changed();
    }}}, el("option", {value: "group"}, "group property"),
    el("option", {value: "person"}, "person property"),
    el("option", {value: "flag"}, "another flag"));
    type.value = p.type || "person";
    const parts = [el("div", {class: "field"}, ...labelled(id + "-type", "Filter on", type))];
    if (p.type === "group") {
      const gt = el("select", {id: id + "-gtype", on: {change: (e) => {
        p.group_type = e.target.value; renderConditions(); changed(); }}},
      ...ed.group_types.map((t) => el("option", {value: t}, t)));
      gt.value = p.group_type || "";
      parts.push(el("div", {class: "field"}, ...labelled(id + "-gtype", "Group type", gt)));
    }
    const listId = id + "-keys";
    const keys = p.type === "flag" ? ed.flags.filter((k) => k !== draft.key)
      : p.type === "group" ? (ed.group_keys[p.group_type] || []) : ed.person_keys;
    const key = el("input", {id: id + "-key", list: listId, value: p.key || "",
      autocomplete: "off", spellcheck: "false", required: true,
      on: {input: (e) => { p.key = e.target.value.trim(); changed(); }}});
    parts.push(el("div", {class: "field"},
      ...labelled(id + "-key", p.type === "flag" ? "Flag" : "Property", key),
      el("datalist", {id: listId}, ...keys.map((k) => el("option", {value: k})))));
    if (p.type !== "flag") {
      const op = el("select", {id: id + "-op", on: {change: (e) => {
        const before = KINDS[p.operator] || "text";
        p.operator = e.target.value;
        const after = KINDS[p.operator] || "text";
        if (before !== after) p.value = after === "list" ? [] : after === "none" ? null : "";
        renderConditions(); changed();
      }}}, ...ed.operators.map((o) => el("option", {value: o}, o)));
      op.value = p.operator || "exact";
      parts.push(el("div", {class: "field"}, ...labelled(id + "-op", "Operator", op)));
    }
    const kind = p.type === "flag" ? "text" : (KINDS[p.operator] || "text");
    if (kind !== "none") {
      const shown = Array.isArray(p.value) ? p.value.join(", ")
        : (p.value === null || p.value === undefined ? "" : String(p.value));
      const value = el("input", {id: id + "-value", value: shown, autocomplete: "off",
        type: kind === "number" ? "number" : "text", step: kind === "number" ? "any" : null,
        placeholder: p.type === "flag" ? "true, false or a variant" : HINTS[kind],
        on: {input: (e) => { p.value = parseValue(kind, e.target.value, p.type); changed(); }}});
      parts.push(el("div", {class: "field"}, ...labelled(id + "-value", "Value", value)));
    }
    if (p.type !== "flag") {
      parts.push(el("label", {class: "check"}, el("input", {type: "checkbox", checked: p.negate,
        on: {change: (e) => { p.negate = e.target.checked; changed(); }}}), "not"));
      parts.push(el("label", {class: "check"}, el("input", {type: "checkbox",
        checked: p.case_insensitive, on: {change: (e) => {
          p.case_insensitive = e.target.checked; changed(); }}}), "ignore case"));
    }
    parts.push(el("button", {type: "button", class: "secondary small",
      "aria-label": "remove this filter", on: {click: remove}}, "Remove"));
    return el("div", {class: "filter"}, ...parts);
  }

  function parseValue(kind, text, type) {
    if (type === "flag") {
      return text === "true" ? true : text === "false" ? false : text.trim();
    }
    if (kind === "list") return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (kind === "number") return text === "" ? null : Number(text);
    return text;
  }

  function renderVariants() {
    const box = $("variants");
    box.replaceChildren(...draft.variants.map((v, vi) => {
      const id = "v" + vi;
      return el("div", {class: "variant"},
        el("div", {class: "field"}, ...labelled(id + "-key", "Variant key",
          el("input", {id: id + "-key", value: v.key, autocomplete: "off", on: {
            input: (e) => {
              const old = v.key;
              v.key = e.target.value.trim();
              if (old in payloadText) { payloadText[v.key] = payloadText[old]; delete payloadText[old]; }
              changed(); },
            change: () => { renderConditions(); renderPayloads(); }}}))),
        el("div", {class: "field"}, ...labelled(id + "-weight", "Weight %",
          el("input", {id: id + "-weight", type: "number", min: 0, max: 100, value: v.weight,
            class: "short", on: {input: (e) => {
              v.weight = Math.round(Number(e.target.value) || 0); changed(); }}}))),
        el("button", {type: "button", class: "secondary small",
          "aria-label": "remove variant " + v.key, on: {click: () => {
            draft.variants.splice(vi, 1); renderVariants(); renderConditions();
            renderPayloads(); changed(); }}}, "Remove"));
    }));
  }

  function renderPayloads() {
    const box = $("payloads");
    const keys = draft.variants.length ? draft.variants.map((v) => v.key) : ["true"];
    box.replaceChildren(...keys.map((k, i) => {
      const id = "pl" + i;
      const area = el("textarea", {id, rows: 2, spellcheck: "false",
        placeholder: '{"color": "green"}', "aria-describedby": id + "-err",
        on: {input: (e) => { payloadText[k] = e.target.value; changed(); }}});
      area.value = payloadText[k] || "";
      return el("div", {class: "field"},
        el("label", {for: id}, "Payload for " + (k === "true" ? "enabled" : k)), area,
        el("span", {id: id + "-err", class: "error-text"}));
    }));
  }

  function renderAll() {
    bindBasics(); renderHierarchy(); renderConditions(); renderVariants(); renderPayloads();
    if (!canEdit) form.querySelectorAll("input, select, textarea, button").forEach((x) => {
      x.disabled = true;
    });
    changed();
  }

  // ------------------------------------------------------------------ checks

  // The draft as the API takes it, and what must be fixed before it can be saved.
  function collect() {
    const problems = [];
    const payloads = {};
    const keys = draft.variants.length ? draft.variants.map((v) => v.key) : ["true"];
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
    if (!draft.key) problems.push("a flag needs a key");
    if (draft.variants.length) {
      const sum = draft.variants.reduce((a, v) => a + (v.weight || 0), 0);
      if (sum !== 100) problems.push("variant weights add up to " + sum + ", not 100");
      const names = draft.variants.map((v) => v.key);
      if (names.some((n) => !n)) problems.push("every variant needs a key");
      if (new Set(names).size !== names.length) problems.push("two variants have the same key");
    }
    draft.conditions.forEach((c, ci) => (c.properties || []).forEach((p, pi) => {
      if (!p.key) problems.push("condition " + (ci + 1) + ", filter " + (pi + 1) + ": choose a property");
      if (p.type === "group" && !p.group_type) {
        problems.push("condition " + (ci + 1) + ", filter " + (pi + 1) + ": choose a group type");
      }
    }));
    const out = {...clone(draft), payloads};
    out.conditions.forEach((c) => (c.properties || []).forEach((p) => {
      if (p.type !== "group") p.group_type = null;
    }));
    return {flag: out, problems};
  }

  function showWeights() {
    const box = $("weights");
    if (!draft.variants.length) { box.replaceChildren(); return; }
    const sum = draft.variants.reduce((a, v) => a + (v.weight || 0), 0);
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

  let previewTimer = null;
  let previewSeq = 0;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, 250);
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

  function ask(lines) {
    const dialog = $("confirm");
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
      draft = rulesOf(base);
      for (const k of Object.keys(payloadText)) delete payloadText[k];
      for (const [k, v] of Object.entries(draft.payloads)) payloadText[k] = JSON.stringify(v);
      $("conflict").hidden = true;
      $("version-label").textContent = "version " + base.version;
      renderAll();
      status("Loaded version " + base.version + ".");
    };
    $("conflict-mine").onclick = () => {
      base = theirs.data;
      $("conflict").hidden = true;
      save(null, false);
    };
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
    draft.conditions.push({properties: [], rollout_percentage: 100, variant: null});
    renderConditions(); changed();
  });
  $("add-variant").addEventListener("click", () => {
    const n = draft.variants.length;
    draft.variants.push({key: n ? "variant-" + (n + 1) : "control", weight: n ? 0 : 100});
    renderVariants(); renderConditions(); renderPayloads(); changed();
  });
  form.addEventListener("submit", (e) => save(e, false));
  $("explain-form").addEventListener("submit", explain);
  renderAll();
})();
