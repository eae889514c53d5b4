// flagsvc console: what every page shares. No data is ever written as HTML: elements are
// built with createElement and filled with textContent (group and person properties come
// from ingestion, which any browser holding the public token can write).
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  // el("td", {class: "x", href: "/ui/"}, "text", child, ...): an element, children as text
  // nodes or elements.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "on") {
        for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      } else if (name === "value") {
        node.value = value;
      } else if (name === "checked") {
        node.checked = Boolean(value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // The admin JSON API with this session (cookie) and its CSRF token.
  async function api(method, path, body, headers) {
    const init = {method, headers: {"X-CSRF-Token": csrf, ...(headers || {})},
      credentials: "same-origin"};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {status: response.status, ok: response.ok, data};
  }

  // An API error as lines of text: the message, then each field's messages.
  function errorLines(data) {
    if (!data) return ["the server did not answer"];
    const lines = [data.message || data.code || "error"];
    for (const [field, messages] of Object.entries(data.errors || {})) {
      lines.push(field + ": " + [].concat(messages).join("; "));
    }
    return lines;
  }

  // Addresses of ingested keys, as the server's group_url/person_url make them: a key
  // that is "." or ".." (resolved away by the browser, even as %2E%2E) or holds a "/"
  // (decoded, it splits the path) goes in the query string.
  const pathSafe = (part) => part !== "." && part !== ".." && !part.includes("/");
  function groupUrl(type, key) {
    return pathSafe(type) && pathSafe(key)
      ? "/ui/groups/" + encodeURIComponent(type) + "/" + encodeURIComponent(key)
      : "/ui/group?" + new URLSearchParams({type, key});
  }
  function personUrl(id) {
    return pathSafe(id) ? "/ui/persons/" + encodeURIComponent(id)
      : "/ui/person?" + new URLSearchParams({id});
  }
  function groupLink(type, key) {
    return el("a", {href: groupUrl(type, key)}, key);
  }
  function personLink(id) {
    return el("a", {href: personUrl(id)}, id);
  }

  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  window.flagsvc = {el, api, errorLines, groupLink, personLink, groupUrl, personUrl, csrf};
})();
