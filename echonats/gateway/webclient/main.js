// Start-up: learn how to sign in (/api/v1/web-config), sign in, pick a workspace, open it.
import { Api } from "./api.js";
import { Auth } from "./auth.js";
import { Workspace } from "./workspace.js";
import { $, el } from "./view.js";

const LAST_WORKSPACE = "echonats.workspace";

function showOnly(id) {
  for (const section of ["signin", "workspaces", "app"]) $(section).hidden = section !== id;
}

async function boot() {
  const config = await fetch("/api/v1/web-config").then((r) => r.json());
  const auth = new Auth(config);
  window.echonats = { auth }; // for the browser tests and the render benchmark
  let signedIn = false;
  try {
    signedIn = await auth.init();
  } catch (error) {
    $("signin-error").textContent = `Sign-in failed: ${error.message}`;
  }
  if (!signedIn) return showSignIn(auth, config);
  auth.addEventListener("expired", () => { auth.clear(); location.reload(); });
  const api = new Api(auth);
  return pickWorkspace(auth, api);
}

function showSignIn(auth, config) {
  showOnly("signin");
  const button = $("signin-oidc");
  button.hidden = !config.oidcIssuer;
  button.onclick = () => auth.login().catch((error) => { $("signin-error").textContent = error.message; });
  const form = $("signin-token");
  form.hidden = !config.devTokens;
  form.onsubmit = (event) => {
    event.preventDefault();
    try {
      auth.useDevToken($("signin-token-input").value.trim());
      location.reload();
    } catch (error) {
      $("signin-error").textContent = error.message;
    }
  };
  if (!config.oidcIssuer && !config.devTokens) {
    $("signin-error").textContent = "This gateway has no sign-in configured (ECHONATS_WEB_OIDC_ISSUER).";
  }
  (config.oidcIssuer ? button : $("signin-token-input")).focus();
}

async function pickWorkspace(auth, api, { chooser = false } = {}) {
  api.tenant = null;
  let listing;
  try {
    listing = await api.get("/workspaces");
  } catch (error) {
    if (error.status === 401) { auth.clear(); return showSignIn(auth, auth.config); }
    showOnly("workspaces");
    $("workspaces-error").textContent = error.message;
    return undefined;
  }
  const last = localStorage.getItem(LAST_WORKSPACE);
  const remembered = listing.items.find((w) => w.id === last);
  if (!chooser && (remembered || (listing.items.length === 1 && !listing.selfService))) {
    return enter(auth, api, remembered ?? listing.items[0]);
  }
  showOnly("workspaces");
  $("workspace-list").replaceChildren(...listing.items.map((w) => el("li", {},
    el("button", { type: "button", onclick: () => enter(auth, api, w) },
      el("span", { text: w.name }), el("span", { class: "muted", text: w.role })))));
  if (!listing.items.length) {
    $("workspace-list").append(el("li", { class: "muted", text: listing.selfService
      ? "You are not in a workspace yet: create one, or join one with the id a member shares."
      : "You are not in a workspace yet; ask an administrator to add you." }));
  }
  $("workspace-create").hidden = !listing.selfService;
  $("workspace-join").hidden = !listing.selfService;
  const fail = (error) => { $("workspaces-error").textContent = error.message; };
  $("workspace-create").onsubmit = (event) => {
    event.preventDefault();
    api.post("/workspaces", { name: $("workspace-create-name").value.trim() }).then((w) => enter(auth, api, w), fail);
  };
  $("workspace-join").onsubmit = (event) => {
    event.preventDefault();
    api.post(`/workspaces/${encodeURIComponent($("workspace-join-id").value.trim())}/join`).then((w) => enter(auth, api, w), fail);
  };
  $("workspaces-signout").onclick = () => auth.logout();
  (listing.items.length ? $("workspace-list").querySelector("button") : $("workspace-create-name"))?.focus();
  return undefined;
}

let active = null;

async function enter(auth, api, workspace) {
  active?.stop();
  localStorage.setItem(LAST_WORKSPACE, workspace.id);
  showOnly("app");
  const session = new Workspace({
    auth,
    api,
    workspace,
    onSwitch: () => { session.stop(); active = null; pickWorkspace(auth, api, { chooser: true }); },
  });
  active = session;
  window.echonats.workspace = session;
  try {
    await session.start();
  } catch (error) {
    session.stop();
    active = null;
    localStorage.removeItem(LAST_WORKSPACE);
    await pickWorkspace(auth, api, { chooser: true });
    $("workspaces-error").textContent = `Could not open ${workspace.name}: ${error.message}`;
  }
}

boot();
