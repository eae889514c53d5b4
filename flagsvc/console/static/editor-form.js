// The flag editor's form: built from the draft (conditions, filters with their pickers and
// an input per operator kind, variants, payloads, bucket_by against the hierarchy); every
// input writes into the draft and calls `state.changed()`. editor.js owns the draft, the
// checks, the blast radius, saving and explain.
(function () {
  "use strict";
  const {el} = window.flagsvc;

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


  window.flagsvcEditorForm = function (state) {
    const ed = state.ed;
    const PERSON = ed.person;
    const canEdit = state.canEdit;
    const payloadText = state.payloadText;
    const changed = () => state.changed();
    const $ = (id) => document.getElementById(id);
    const form = $("flag-form");

    // ------------------------------------------------------------------ form <-> draft

    function bindBasics() {
      const draft = state.draft;
      $("f-key").value = draft.key;
      $("f-name").value = draft.name || "";
      $("f-description").value = draft.description || "";
      $("f-active").checked = draft.active;
      $("f-key").oninput = (e) => { draft.key = e.target.value.trim(); changed(); };
      $("f-name").oninput = (e) => { draft.name = e.target.value; changed(); };
      $("f-description").oninput = (e) => { draft.description = e.target.value; changed(); };
      $("f-active").onchange = (e) => { draft.active = e.target.checked; changed(); };
      $("f-namespace").value = draft.hash_namespace || "";
      $("f-namespace").oninput = (e) => {
        draft.hash_namespace = e.target.value.trim() || null; changed(); };
      const bucket = $("f-bucket");
      bucket.replaceChildren(el("option", {value: PERSON}, "$person (the distinct id)"),
        ...ed.group_types.map((t) => el("option", {value: t}, t)));
      if (![PERSON, ...ed.group_types].includes(draft.bucket_by)) {
        bucket.append(el("option", {value: draft.bucket_by}, draft.bucket_by + " (not a type yet)"));
      }
      bucket.value = draft.bucket_by;
      bucket.onchange = (e) => {
        draft.bucket_by = e.target.value; renderHierarchy(); renderConditions(); changed(); };
      const xt = $("x-type");
      xt.replaceChildren(el("option", {value: ""}, "(none)"),
        ...ed.group_types.map((t) => el("option", {value: t}, t)));
    }

    // bucket_by against the hierarchy: the chain of types from the most specific to the top,
    // with the bucket type marked, and which levels a request may name instead.
    function renderHierarchy() {
      const draft = state.draft;
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

    function renderConditions() {
      const draft = state.draft;
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
        // A condition may bucket on another type than the flag (Unleash's stickiness).
        const types = [PERSON, ...ed.group_types];
        const cbucket = el("select", {id: id + "-bucket", on: {change: (e) => {
          c.bucket_by = e.target.value || null; changed(); }}},
        el("option", {value: ""}, "the flag's (" + draft.bucket_by + ")"),
        ...types.map((t) => el("option", {value: t}, t === PERSON ? "$person (the distinct id)" : t)),
        c.bucket_by && !types.includes(c.bucket_by)
          ? el("option", {value: c.bucket_by}, c.bucket_by + " (not a type yet)") : null);
        cbucket.value = c.bucket_by || "";
        return el("div", {class: "condition", "data-condition": ci},
          el("div", {class: "row-head"}, el("h3", {}, "Condition " + (ci + 1)),
            el("button", {type: "button", class: "secondary small",
              "aria-label": "remove condition " + (ci + 1),
              on: {click: () => { draft.conditions.splice(ci, 1); renderConditions(); changed(); }}},
            "Remove")),
          el("div", {class: "filters-list"}, (c.properties || []).map((p, pi) =>
            propertyRow(c, p, pi, id + "p" + pi, ci))),
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
          el("div", {class: "field"}, ...labelled(id + "-bucket", "Bucket by", cbucket)),
          draft.variants.length ? el("div", {}, ...labelled(id + "-variant", "Variant", variant))
            : "");
      }));
      if (!draft.conditions.length) {
        box.append(el("p", {class: "muted"}, "No condition: the flag is off for everyone."));
      }
    }

    // The operators offered: flagsvc's own names; an alias (PostHog's, Unleash's) only when
    // a stored filter already uses it, so it shows as it is.
    function operatorsFor(p) {
      return !p.operator || ed.operators.includes(p.operator) ? ed.operators
        : [...ed.operators, p.operator];
    }

    function propertyRow(c, p, pi, id, ci) {
      const draft = state.draft;
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
        }}}, ...operatorsFor(p).map((o) => el("option", {value: o}, o)));
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
      // Which filter a checkbox or button is about, for a screen reader among several.
      const which = "filter " + (pi + 1) + " of condition " + (ci + 1);
      if (p.type !== "flag") {
        parts.push(el("label", {class: "check"}, el("input", {type: "checkbox", checked: p.negate,
          "aria-label": "not: negate " + which,
          on: {change: (e) => { p.negate = e.target.checked; changed(); }}}), "not"));
        parts.push(el("label", {class: "check"}, el("input", {type: "checkbox",
          "aria-label": "ignore case in " + which,
          checked: p.case_insensitive, on: {change: (e) => {
            p.case_insensitive = e.target.checked; changed(); }}}), "ignore case"));
      }
      parts.push(el("button", {type: "button", class: "secondary small",
        "aria-label": "remove " + which, on: {click: remove}}, "Remove"));
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
      const draft = state.draft;
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
      const draft = state.draft;
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

    return {renderAll, renderConditions, renderVariants, renderPayloads};
  };
})();
