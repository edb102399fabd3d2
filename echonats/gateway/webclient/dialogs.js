// One <dialog> for every question the client asks (create a channel, browse, DM, invite, status,
// confirm): focus moves into it, Escape cancels, the answer comes back as a promise.
import { $, el } from "./view.js";

/**
 * Shows the dialog. `build(body)` fills it and returns a function that reads the answer (it may
 * throw an Error to keep the dialog open with that message); `submit(answer)` may be async and
 * throw too. Resolves with submit's result, or null when cancelled.
 */
export function ask({ title, ok = "OK", build, submit = (answer) => answer }) {
  const dialog = $("dialog");
  const body = $("dialog-body");
  const error = $("dialog-error");
  $("dialog-title").textContent = title;
  $("dialog-ok").textContent = ok;
  body.replaceChildren();
  error.textContent = "";
  const read = build(body);
  return new Promise((resolve) => {
    const form = $("dialog-form");
    const finish = (value) => {
      form.onsubmit = null;
      $("dialog-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    form.onsubmit = async (event) => {
      event.preventDefault();
      try {
        $("dialog-ok").disabled = true;
        finish(await submit(read()));
      } catch (failure) {
        error.textContent = failure.message;
      } finally {
        $("dialog-ok").disabled = false;
      }
    };
    $("dialog-cancel").onclick = () => finish(null);
    dialog.onclose = () => finish(null);
    dialog.showModal();
    body.querySelector("input, textarea, select")?.focus();
  });
}

export function field(label, attrs = {}) {
  const id = `field-${Math.random().toString(36).slice(2)}`;
  const input = el(attrs.multiline ? "textarea" : "input", { id, autocomplete: "off", ...attrs, multiline: null });
  return { nodes: [el("label", { for: id, text: label }), input], input };
}

export function checkbox(label, checked = false) {
  const input = el("input", { type: "checkbox", checked: checked || null });
  return { node: el("label", { class: "checkbox" }, input, label), input };
}

/** A list of checkable (or, with `single`, radio) choices: [{value, label}]. */
export function choices(items, { single = false, name = "choice" } = {}) {
  const list = el("ul", { class: "choice-list" });
  const inputs = [];
  for (const item of items) {
    const input = el("input", { type: single ? "radio" : "checkbox", name, value: item.value });
    inputs.push(input);
    list.append(el("li", {}, el("label", {}, input, item.label)));
  }
  return { node: list, selected: () => inputs.filter((i) => i.checked).map((i) => i.value) };
}

export function confirmAction(title, text, ok) {
  return ask({ title, ok, build: (body) => { body.append(el("p", { text })); return () => true; } });
}
