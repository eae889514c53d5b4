// The flag editor's comparisons, no page access: flags compared by content, not by position.
// - merge3(base, theirs, mine): a stale save's three-way merge, field by field (a condition's
//   filters, rollout, variant and bucket_by each on their own when no side added, removed or
//   moved a condition): what only they changed keeps theirs, what only I changed takes mine, what
//   both changed differently is a conflict to choose.
// - audienceChanges(before, after): every change of who gets what (switched off or on,
//   bucketing, a condition removed, added or changed, a rollout, the variants and weights,
//   a payload), in words, for the confirmation before saving.
// Every flag given is in the editor's shape (rulesOf: conditions, variants and payloads
// always present).
(function () {
  "use strict";

  const clone = (x) => (x === undefined ? undefined : JSON.parse(JSON.stringify(x)));

  function rolloutOf(c) {
    return c.rollout_percentage === null || c.rollout_percentage === undefined
      ? 100 : c.rollout_percentage;
  }

  // Values as the engine reads them: no null or absent keys, no false modifiers, no group
  // type on a filter that is not a group's, object keys in order.
  function tidy(x) {
    if (Array.isArray(x)) return x.map(tidy);
    if (x && typeof x === "object") {
      const out = {};
      for (const k of Object.keys(x).sort()) {
        const v = x[k];
        if (v === null || v === undefined) continue;
        if ((k === "negate" || k === "case_insensitive") && v === false) continue;
        if (k === "group_type" && x.type !== "group" && "type" in x) continue;
        out[k] = tidy(v);
      }
      return out;
    }
    return x;
  }
  const canon = (x) => JSON.stringify(x === undefined ? null : tidy(x));
  const same = (a, b) => canon(a) === canon(b);

  function normCondition(c) {
    return {...c, properties: c.properties || [], rollout_percentage: rolloutOf(c),
      variant: c.variant || null, bucket_by: c.bucket_by || null};
  }

  // ------------------------------------------------------------------ words

  function valueText(v) {
    if (v === null || v === undefined) return "";
    return Array.isArray(v) ? v.join(", ") : String(v);
  }

  function filterText(p) {
    const where = p.type === "group" ? (p.group_type || "?") + "." : p.type === "flag" ? "flag " : "";
    const value = valueText(p.value);
    return where + (p.key || "?") + " " + (p.negate ? "not " : "") + (p.operator || "exact") +
      (value ? " " + value : "") + (p.case_insensitive ? " (ignore case)" : "");
  }

  function filtersText(props) {
    return props && props.length ? props.map(filterText).join(" and ") : "everyone";
  }

  function conditionText(c) {
    return filtersText(c.properties) + ", rollout " + rolloutOf(c) + " %" +
      (c.variant ? ", variant " + c.variant : "") +
      (c.bucket_by ? ", bucketed by " + c.bucket_by : "");
  }

  function variantsText(variants) {
    return variants && variants.length
      ? variants.map((v) => v.key + " " + v.weight + " %").join(", ") : "none (on / off)";
  }

  // How a field's value is shown, by its kind.
  const SHOW = {
    text: (v) => (v === null || v === undefined || v === "" ? "(empty)" : String(v)),
    active: (v) => (v ? "on" : "off"),
    rollout: (v) => v + " %",
    variant: (v) => v || "by hash (weights)",
    bucket: (v) => v || "(the flag's)",
    filters: filtersText,
    conditions: (cs) => (cs.length ? cs.map((c, i) => (i + 1) + ". " + conditionText(c)).join("; ")
      : "none: off for everyone"),
    variants: variantsText,
    json: (v) => (v === undefined ? "(none)" : JSON.stringify(v)),
  };

  // ------------------------------------------------------------------ three-way merge

  function field(name, label, kind) {
    return {name, label, kind, get: (r) => r[name], set: (r, v) => { r[name] = clone(v); }};
  }

  function conditionPart(i, part, label, kind) {
    return {name: "conditions." + i + "." + part, label: label + " of condition " + (i + 1), kind,
      get: (r) => normCondition(r.conditions[i])[part],
      set: (r, v) => { r.conditions[i][part] = clone(v); }};
  }

  // The fields merged one by one, for these versions of one flag.
  function fieldsOf(versions) {
    const list = [field("name", "Name", "text"), field("description", "Description", "text"),
      field("active", "Active", "active"), field("bucket_by", "Bucket by", "text"),
      field("hash_namespace", "Hash namespace", "text")];
    const [base, ...others] = versions.map((v) => v.conditions.map(normCondition));
    const inPlace = (now) => now.length === base.length &&
      pairConditions(base, now).pairs.every(([i, j]) => i === j);
    if (others.every(inPlace)) {  // no side added, removed or moved a condition
      const n = base.length;
      for (let i = 0; i < n; i++) {
        list.push(conditionPart(i, "properties", "Filters", "filters"),
          conditionPart(i, "rollout_percentage", "Rollout", "rollout"),
          conditionPart(i, "variant", "Variant", "variant"),
          conditionPart(i, "bucket_by", "Bucket by", "bucket"));
      }
    } else {  // a condition added, removed or moved: the list is one field
      list.push({name: "conditions", label: "Conditions", kind: "conditions",
        get: (r) => r.conditions.map(normCondition), set: (r, v) => { r.conditions = clone(v); }});
    }
    list.push(field("variants", "Variants and weights", "variants"));
    const keys = new Set();
    versions.forEach((v) => Object.keys(v.payloads).forEach((k) => keys.add(k)));
    for (const k of [...keys].sort()) {
      list.push({name: "payloads." + k, label: "Payload for " + k, kind: "json",
        get: (r) => r.payloads[k],
        set: (r, v) => { if (v === undefined) delete r.payloads[k]; else r.payloads[k] = clone(v); }});
    }
    return list;
  }

  // rows: every field some side changed, with its three values and its outcome ("theirs":
  // only they changed it, "mine": only I did, "same": both alike, "conflict"); build(choices)
  // the merged flag, choices {field name: "theirs" | "mine"} deciding the conflicts.
  function merge3(base, theirs, mine) {
    const rows = [];
    for (const f of fieldsOf([base, theirs, mine])) {
      const b = f.get(base), t = f.get(theirs), m = f.get(mine);
      let outcome;
      if (same(t, m)) outcome = same(t, b) ? null : "same";
      else if (same(t, b)) outcome = "mine";
      else if (same(m, b)) outcome = "theirs";
      else outcome = "conflict";
      if (outcome) rows.push({field: f, base: b, theirs: t, mine: m, outcome,
        show: (v) => SHOW[f.kind](v)});
    }
    function build(choices) {
      const out = clone(theirs);
      for (const r of rows) {
        if (r.outcome === "mine" || (r.outcome === "conflict" && choices[r.field.name] === "mine")) {
          r.field.set(out, r.mine);
        }
      }
      const keys = out.variants.length ? out.variants.map((v) => v.key) : ["true"];
      for (const k of Object.keys(out.payloads)) if (!keys.includes(k)) delete out.payloads[k];
      return out;
    }
    return {rows, build};
  }

  // ------------------------------------------------------------------ who gets what

  function audienceChanges(before, after) {
    const lines = [];
    const key = before.key;
    if (before.active && !after.active) lines.push("Switch " + key + " off: every request gets false.");
    if (!before.active && after.active) {
      lines.push("Switch " + key + " on: its conditions decide again who gets it.");
    }
    if (before.bucket_by !== after.bucket_by) {
      lines.push("Bucket by " + after.bucket_by + " instead of " + before.bucket_by +
        ": every bucket is drawn again, so who is in the rollout and which variant each gets change.");
    }
    if (!same(before.hash_namespace, after.hash_namespace)) {
      lines.push("Change the hash namespace from " + SHOW.text(before.hash_namespace) + " to " +
        SHOW.text(after.hash_namespace) + ": every bucket is drawn again.");
    }
    lines.push(...conditionChanges(before.conditions.map(normCondition),
      after.conditions.map(normCondition)));
    if (!same(before.variants, after.variants)) {
      lines.push("Change the variants and weights from " + variantsText(before.variants) +
        " to " + variantsText(after.variants) + ": some get another variant.");
    }
    const keys = new Set([...Object.keys(before.payloads), ...Object.keys(after.payloads)]);
    for (const k of [...keys].sort()) {
      if (!same(before.payloads[k], after.payloads[k])) {
        lines.push("Change the payload for " + k + " from " + SHOW.json(before.payloads[k]) +
          " to " + SHOW.json(after.payloads[k]) + ".");
      }
    }
    return lines;
  }

  // Conditions paired by whom they target (filters, variant, bucket_by), wherever they are
  // in the lists: pairs [i, j], the indexes of `was` left unpaired (gone) and of `now` (added).
  function pairConditions(was, now) {
    const target = (c) => canon({properties: c.properties, variant: c.variant, bucket_by: c.bucket_by});
    const taken = new Set();
    const pairs = [];
    const gone = [];
    was.forEach((c, i) => {
      const j = now.findIndex((d, jj) => !taken.has(jj) && target(d) === target(c));
      if (j < 0) { gone.push(i); return; }
      taken.add(j);
      pairs.push([i, j]);
    });
    return {pairs, gone, added: now.map((_, j) => j).filter((j) => !taken.has(j))};
  }

  // What is left over at the same place is a changed condition, the rest removed or added.
  function conditionChanges(was, now) {
    const lines = [];
    const paired = pairConditions(was, now);
    const {pairs, gone} = paired;
    let added = paired.added;
    for (const [i, j] of pairs) {
      if (was[i].rollout_percentage !== now[j].rollout_percentage) {
        lines.push("Change the rollout of condition " + (j + 1) + " (" + filtersText(now[j].properties) +
          ") from " + was[i].rollout_percentage + " % to " + now[j].rollout_percentage + " %.");
      }
    }
    for (const i of [...gone]) {
      if (!added.includes(i)) continue;
      lines.push("Change condition " + (i + 1) + " from " + conditionText(was[i]) + " to " +
        conditionText(now[i]) + ".");
      gone.splice(gone.indexOf(i), 1);
      added = added.filter((j) => j !== i);
    }
    for (const i of gone) {
      lines.push("Remove condition " + (i + 1) + " (" + conditionText(was[i]) +
        "): what it matched no longer gets the flag through it.");
    }
    for (const j of added) lines.push("Add condition " + (j + 1) + " (" + conditionText(now[j]) + ").");
    const order = pairs.map(([, j]) => j);
    if (!lines.length && order.some((j, k) => k && j < order[k - 1])) {
      lines.push("Reorder the conditions: the first that matches decides.");
    }
    return lines;
  }

  window.flagsvcMerge = {merge3, audienceChanges, rolloutOf, canon};
})();
