// REST under /api/v1: the bearer token, the workspace in Echonats-Tenant (tokens without a
// tenant claim act in one workspace per request), errors as ApiError with the server's code.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export class Api {
  constructor(auth) {
    this.auth = auth;
    this.tenant = null;
  }

  async request(method, path, body, { retried = false } = {}) {
    const headers = { Authorization: `Bearer ${this.auth.token}` };
    if (this.tenant) headers["Echonats-Tenant"] = this.tenant;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "offline", "the server cannot be reached");
    }
    if (response.status === 401 && !retried) {
      // The token lapsed between refreshes (a laptop that slept): refresh once and try again.
      const refreshed = await this.auth.refresh().then(() => true, () => false);
      if (refreshed) return this.request(method, path, body, { retried: true });
    }
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = json?.error ?? {};
      const retryAfter = Number(response.headers.get("Retry-After"));
      throw new ApiError(
        response.status,
        error.code ?? "error",
        error.message ?? `${method} ${path}: ${response.status}`,
        response.status === 429 && retryAfter ? retryAfter * 1000 : null,
      );
    }
    return json;
  }

  get(path) { return this.request("GET", path); }
  post(path, body = {}) { return this.request("POST", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  patch(path, body) { return this.request("PATCH", path, body); }
  delete(path) { return this.request("DELETE", path); }
}
