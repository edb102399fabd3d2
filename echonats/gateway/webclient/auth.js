// Signing in: OIDC authorization code flow with PKCE (S256) against the issuer the gateway names
// in /api/v1/web-config (the local issuer of `echonats run`, Keycloak, any OIDC provider with a
// public client), the refresh grant before the access token expires, or a pasted development token.

const STORE = "echonats.auth";
const FLOW = "echonats.auth.flow";
const REFRESH_MARGIN_S = 60; // refresh this long before `exp` (or at 80% of a short lifetime)

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

export function decodeJwt(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      [...atob(part)].map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export class Auth extends EventTarget {
  constructor(config) {
    super();
    this.config = config; // {oidcIssuer, oidcClientId, devTokens}
    this.tokens = null; // {accessToken, refreshToken, idToken}
    this.discovery = null;
    this.refreshTimer = null;
    this.refreshing = null;
  }

  get token() { return this.tokens?.accessToken ?? null; }
  get claims() { return this.token ? decodeJwt(this.token) : null; }
  get redirectUri() { return `${location.origin}/`; }

  async discover() {
    if (!this.discovery) {
      const url = `${this.config.oidcIssuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
      const response = await fetch(url);
      if (!response.ok) throw new Error(`the sign-in service answered ${response.status}`);
      this.discovery = await response.json();
    }
    return this.discovery;
  }

  /** Restores a session, or finishes a redirect back from the issuer. True: signed in. */
  async init() {
    const params = new URLSearchParams(location.search);
    if (params.has("code") || params.has("error")) {
      history.replaceState(null, "", "/");
      if (params.has("error")) throw new Error(params.get("error_description") || params.get("error"));
      await this.finishLogin(params.get("code"), params.get("state"));
    } else {
      this.tokens = JSON.parse(localStorage.getItem(STORE) || "null");
    }
    if (!this.tokens) return false;
    const exp = this.claims?.exp;
    if (exp && exp * 1000 <= Date.now()) {
      if (!(await this.refresh().then(() => true, () => false))) {
        this.clear();
        return false;
      }
    }
    this.schedule();
    return true;
  }

  async login() {
    const discovery = await this.discover();
    const verifier = randomString(48);
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = randomString(16);
    const nonce = randomString(16);
    sessionStorage.setItem(FLOW, JSON.stringify({ verifier, state, nonce }));
    const query = new URLSearchParams({
      client_id: this.config.oidcClientId,
      redirect_uri: this.redirectUri,
      response_type: "code",
      response_mode: "query",
      scope: "openid profile",
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    location.assign(`${discovery.authorization_endpoint}?${query}`);
  }

  async finishLogin(code, state) {
    const flow = JSON.parse(sessionStorage.getItem(FLOW) || "null");
    sessionStorage.removeItem(FLOW);
    if (!flow || flow.state !== state) throw new Error("the sign-in answer does not match this tab's request; try again");
    const discovery = await this.discover();
    await this.tokenRequest(discovery.token_endpoint, {
      grant_type: "authorization_code",
      code,
      redirect_uri: this.redirectUri,
      client_id: this.config.oidcClientId,
      code_verifier: flow.verifier,
    });
    const idClaims = this.tokens.idToken ? decodeJwt(this.tokens.idToken) : null;
    if (idClaims && idClaims.nonce !== flow.nonce) {
      this.clear();
      throw new Error("the sign-in answer carries another nonce; try again");
    }
  }

  async tokenRequest(endpoint, form) {
    const response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error_description || body.error || `token endpoint: ${response.status}`);
    this.setTokens({
      accessToken: body.access_token,
      refreshToken: body.refresh_token ?? this.tokens?.refreshToken ?? null,
      idToken: body.id_token ?? this.tokens?.idToken ?? null,
    });
  }

  useDevToken(token) {
    if (!decodeJwt(token)) throw new Error("that is not a JWT");
    this.setTokens({ accessToken: token, refreshToken: null, idToken: null });
    this.schedule();
  }

  setTokens(tokens) {
    this.tokens = tokens;
    localStorage.setItem(STORE, JSON.stringify(tokens));
    this.dispatchEvent(new CustomEvent("token", { detail: tokens.accessToken }));
  }

  /** A fresh access token through the refresh grant (one at a time). */
  refresh() {
    if (!this.tokens?.refreshToken || !this.config.oidcIssuer) return Promise.reject(new Error("cannot refresh"));
    this.refreshing ??= this.discover()
      .then((d) => this.tokenRequest(d.token_endpoint, {
        grant_type: "refresh_token",
        refresh_token: this.tokens.refreshToken,
        client_id: this.config.oidcClientId,
      }))
      .then(() => this.schedule())
      .finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  schedule() {
    clearTimeout(this.refreshTimer);
    const claims = this.claims;
    if (!claims?.exp || !this.tokens?.refreshToken) return;
    const lifetime = claims.exp - (claims.iat ?? Math.floor(Date.now() / 1000));
    const lead = Math.min(REFRESH_MARGIN_S, lifetime * 0.2);
    const wait = Math.max(1000, (claims.exp - lead) * 1000 - Date.now());
    // setTimeout holds at most ~24.8 days; a long token just schedules again when it fires.
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => this.dispatchEvent(new Event("expired"))),
      Math.min(wait, 2 ** 31 - 1));
  }

  clear() {
    clearTimeout(this.refreshTimer);
    this.tokens = null;
    localStorage.removeItem(STORE);
  }

  async logout() {
    const idToken = this.tokens?.idToken;
    this.clear();
    if (this.config.oidcIssuer && idToken) {
      const discovery = await this.discover().catch(() => null);
      if (discovery?.end_session_endpoint) {
        const query = new URLSearchParams({ post_logout_redirect_uri: this.redirectUri, id_token_hint: idToken });
        location.assign(`${discovery.end_session_endpoint}?${query}`);
        return;
      }
    }
    location.assign("/");
  }
}
