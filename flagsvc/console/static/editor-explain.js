// The flag editor's explain: why does this context (a distinct id, a group) get its answer
// from the draft being edited? POST /api/flags/explain, the answer shown as text.
// `window.flagsvcExplain(draft)` gives the explain form's submit handler; `draft()` is the
// flag as the API takes it.
(function () {
  "use strict";
  const {el, api, errorLines} = window.flagsvc;
  const $ = (id) => document.getElementById(id);

  window.flagsvcExplain = (draft) => async function explain(event) {
    event.preventDefault();
    const box = $("explain");
    const flag = draft();
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
  };
})();
