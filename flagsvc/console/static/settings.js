// Project settings and token rotation, through the admin API (PATCH /api/project,
// POST /api/project/tokens, POST /api/project/signing_keys).
(function () {
  "use strict";
  const {el, api, errorLines} = window.flagsvc;
  const form = document.getElementById("settings-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("settings-status");
    const body = {
      name: form.name.value,
      default_group_type: form.default_group_type.value,
      client_properties: form.client_properties.value,
      event_retention_days: Number(form.event_retention_days.value),
      ingestion_creates_group_types: form.ingestion_creates_group_types.checked,
      require_signed_groups: form.require_signed_groups.checked,
    };
    const r = await api("PATCH", "/api/project", body);
    status.textContent = r.ok ? "Saved." : "Not saved: " + errorLines(r.data).join(" · ");
    status.className = r.ok ? "ok-text" : "error-text";
  });
  const rotate = document.getElementById("rotate-form");
  rotate.addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = rotate.kind.value;
    const grace = Number(rotate.grace_seconds.value);
    const what = rotate.kind.options[rotate.kind.selectedIndex].text;
    if (!window.confirm("Rotate " + what + "? The old one stops working in " + grace + " s.")) return;
    const r = kind === "signing"
      ? await api("POST", "/api/project/signing_keys", {grace_seconds: grace})
      : await api("POST", "/api/project/tokens", {kind, grace_seconds: grace});
    const box = document.getElementById("rotated");
    if (!r.ok) {
      box.replaceChildren(el("p", {class: "error-text"}, errorLines(r.data).join(" · ")));
      return;
    }
    const value = kind === "signing" ? r.data.signing_key : r.data.token;
    box.replaceChildren(el("p", {}, "New " + what + " (copy it now, it is not shown again):"),
      el("p", {}, el("code", {id: "new-token"}, value)));
    if (kind === "api") document.getElementById("api-token").textContent = value;
  });
})();
