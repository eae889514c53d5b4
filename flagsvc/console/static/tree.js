// flagsvc console: a group profile's hierarchy, loaded a level and a page at a time. The
// server renders the group's first page of children; each child with children of its own
// gets a "Show children" button (a disclosure: aria-expanded, Enter or Space), whose
// children come from /ui/tree a page at a time, with "Show more" for the next page. Keys
// come from ingestion: every text is set with textContent (console.js's el()).
(function () {
  "use strict";
  const {el, groupLink} = window.flagsvc;

  async function page(type, key, after) {
    const args = new URLSearchParams({type, key});
    if (after) {
      args.set("after_type", after.after_type);
      args.set("after_key", after.after_key);
    }
    const response = await fetch("/ui/tree?" + args, {credentials: "same-origin",
      headers: {"Accept": "application/json"}});
    // Signed out: the gate answers with the sign-in page (a redirect, HTML), not JSON.
    const json = (response.headers.get("Content-Type") || "").includes("application/json");
    if (response.status === 401 || response.redirected || (response.ok && !json)) {
      throw new SignedOut();
    }
    if (!response.ok) throw new Error("the server answered " + response.status);
    return response.json();
  }

  function item(child) {
    const li = el("li", {}, el("span", {class: "muted"}, child.group_type), " ",
      groupLink(child.group_type, child.group_key));
    if (child.has_children) {
      li.append(" ", toggle(el("button", {type: "button", class: "secondary small tree-toggle",
        "aria-expanded": "false", "data-type": child.group_type, "data-key": child.group_key},
      "Show children", el("span", {class: "sr-only"}, " of " + child.group_key))));
    }
    return li;
  }

  // Appends one page of children to `list` (before its "more" item), then a "Show more"
  // button when another page follows; focus goes to the first new child's link.
  async function fill(list, type, key, after, focus) {
    const data = await page(type, key, after);
    const first = data.children.length ? item(data.children[0]) : null;
    const items = data.children.map((c, i) => (i === 0 ? first : item(c)));
    if (!items.length && !after) items.push(el("li", {class: "muted"}, "no child group"));
    list.append(...items);
    if (data.next) {
      const more = el("button", {type: "button", class: "secondary small"},
        "Show more", el("span", {class: "sr-only"}, " children of " + key));
      const li = el("li", {class: "tree-more"}, more);
      more.addEventListener("click", () => {
        more.disabled = true;
        li.remove();
        fill(list, type, key, data.next, true).catch((e) => failed(list, e));
      });
      list.append(li);
    }
    if (focus && first) first.querySelector("a").focus();
  }

  class SignedOut extends Error {}

  function failed(list, error) {
    const here = window.location.pathname + window.location.search;
    list.append(error instanceof SignedOut
      ? el("li", {class: "error", role: "alert"}, "could not load: signed out — ",
        el("a", {href: "/ui/signin?next=" + encodeURIComponent(here)}, "sign in again"))
      : el("li", {class: "error", role: "alert"}, "could not load: " + error.message));
  }

  function toggle(button) {
    button.hidden = false;
    let list = null;
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      button.firstChild.textContent = open ? "Hide children" : "Show children";
      if (list) {
        list.hidden = !open;
        return;
      }
      list = el("ul", {class: "tree", id: "tree-" + Math.random().toString(36).slice(2)});
      button.setAttribute("aria-controls", list.id);
      button.closest("li").append(list);
      button.setAttribute("aria-busy", "true");
      fill(list, button.dataset.type, button.dataset.key, null, false)
        .catch((e) => failed(list, e))
        .finally(() => button.removeAttribute("aria-busy"));
    });
    return button;
  }

  document.querySelectorAll("button.tree-toggle").forEach(toggle);
  // The first level's "Show more children" link works without this script (the next page
  // of the profile); with it, the next page is added in place.
  const root = document.getElementById("tree-root");
  const more = root && root.querySelector("li.tree-more a");
  if (more) {
    more.addEventListener("click", (event) => {
      event.preventDefault();
      const li = more.closest("li");
      li.remove();
      fill(root, root.dataset.type, root.dataset.key, {
        after_type: more.dataset.afterType, after_key: more.dataset.afterKey}, true)
        .catch((e) => failed(root, e));
    });
  }
})();
