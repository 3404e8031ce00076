// The API as the dashboard uses it: the token from sessionStorage in the Authorization
// header (never in a URL), problem+json errors turned into one exception.

const TOKEN_KEY = "admin-token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  forget: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `The server answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }
}

// Calls the API; returns {body, headers}. `bearer` overrides the stored token (sign-in).
export async function api(path, { method = "GET", body, headers = {}, bearer } = {}) {
  const init = {
    method,
    headers: {
      Accept: "application/json, application/problem+json",
      Authorization: `Bearer ${bearer ?? token.get() ?? ""}`,
      ...headers,
    },
    cache: "no-store",
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "The server cannot be reached. Check the connection." });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return { body: data, headers: response.headers };
}

export const query = (params) => {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? `?${new URLSearchParams(entries)}` : "";
};
