// The purchase page: checks the form like the server does, posts it as JSON and
// tells the shopper what happened. The server stays the authority on every rule.

const ENDPOINT = "/api/v1/purchases";
const TIMEOUT_MS = 15000;

// Form field id -> how the page names it, and where the API reports it.
const FIELDS = {
  name: { label: "name", path: "customer.name" },
  email: { label: "email", path: "customer.email" },
  item: { label: "item", path: "item" },
  quantity: { label: "quantity", path: "quantity" },
  unit_price: { label: "unit price", path: "unit_price" },
  currency: { label: "currency", path: "currency" },
};
const FIELD_BY_PATH = Object.fromEntries(
  Object.entries(FIELDS).map(([id, field]) => [field.path, id]),
);

const form = document.getElementById("purchase-form");
const submitButton = document.getElementById("submit");
const outcome = document.getElementById("outcome");
const input = (id) => document.getElementById(id);

// The last attempt not known to have succeeded ({body, key}): sending the same data again
// reuses its Idempotency-Key, so a purchase whose answer was lost is recorded once.
let pending = null;
let inFlight = false;

const codePoints = (text) => [...text].length;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function readForm() {
  const value = (id) => input(id).value;
  return {
    name: value("name").trim(),
    email: value("email").trim(),
    item: value("item").trim(),
    quantity: value("quantity").trim(),
    unit_price: value("unit_price").trim().replace(/^(\d*),(\d+)$/, "$1.$2"),
    currency: value("currency"),
  };
}

// The server's rules, checked before sending: returns {fieldId: message}.
function check(v) {
  const errors = {};
  const text = (id, max) => {
    if (!v[id]) errors[id] = "required";
    else if (codePoints(v[id]) > max) errors[id] = `at most ${max} characters`;
    else if (CONTROL.test(v[id])) errors[id] = "must not contain control characters";
  };
  text("name", 100);
  text("item", 200);

  if (!v.email) errors.email = "required";
  else if (v.email.length > 320) errors.email = "at most 320 characters";
  else if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v.email)) {
    errors.email = "enter an address like tim@example.com";
  }

  if (!v.quantity) errors.quantity = "required";
  else if (!/^\d+$/.test(v.quantity) || +v.quantity < 1 || +v.quantity > 10000) {
    errors.quantity = "a whole number from 1 to 10000";
  }

  const price = /^(\d*)(?:\.(\d*))?$/.exec(v.unit_price);
  if (!v.unit_price) errors.unit_price = "required";
  else if (v.unit_price.startsWith("-")) errors.unit_price = "must not be negative";
  else if (!price || !/\d/.test(v.unit_price)) errors.unit_price = "a number like 12.50";
  else if ((price[2] ?? "").replace(/0+$/, "").length > 2) {
    errors.unit_price = "at most 2 decimal places";
  } else if (+(price[1] || "0") >= 1e9) errors.unit_price = "must be less than 1000000000";

  if (!/^[A-Z]{3}$/.test(v.currency)) errors.currency = "choose a currency";
  return errors;
}

function showFieldErrors(errors) {
  let first = null;
  for (const [id, field] of Object.entries(FIELDS)) {
    const message = errors[id];
    input(`${id}-error`).textContent = message ? `${field.label}: ${message}` : "";
    if (message) {
      input(id).setAttribute("aria-invalid", "true");
      first ??= input(id);
    } else {
      input(id).removeAttribute("aria-invalid");
    }
  }
  first?.focus();
}

function clearFieldError(id) {
  if (!(id in FIELDS)) return;
  input(`${id}-error`).textContent = "";
  input(id).removeAttribute("aria-invalid");
}

function say(kind, ...lines) {
  outcome.className = `outcome outcome--${kind}`;
  outcome.replaceChildren(
    ...lines.filter(Boolean).map((line) => {
      const p = document.createElement("p");
      p.textContent = line;
      return p;
    }),
  );
}

function thanks(purchase) {
  const { customer, quantity, item, unit_price: price, total, currency } = purchase;
  const cost = quantity === 1
    ? `${price} ${currency}`
    : `${price} ${currency} each, ${total} ${currency} in total`;
  say(
    "success",
    `Thanks ${customer.name} — your purchase of ${quantity} × ${item} (${cost}) is recorded.`,
    purchase.customer_created ? "Welcome, new customer!" : `Welcome back, ${customer.name}!`,
    `Reference number ${purchase.id}.`,
  );
}

function askToCorrect(count) {
  say("error", `Please correct the ${count === 1 ? "field" : `${count} fields`} marked above.`);
}

function explainProblem(status, problem) {
  const errors = {};
  const unplaced = [];
  for (const error of problem?.errors ?? []) {
    const id = FIELD_BY_PATH[error.field];
    if (id && !errors[id]) errors[id] = error.message;
    else if (!id) unplaced.push(error.field ? `${error.field}: ${error.message}` : error.message);
  }
  showFieldErrors(errors);
  const count = Object.keys(errors).length;
  if (count && !unplaced.length) {
    askToCorrect(count);
  } else if (problem?.title) {
    say("error", problem.title, problem.detail !== problem.title && problem.detail, ...unplaced);
  } else {
    say("error", `The shop could not record your purchase (error ${status}). Please try again.`);
  }
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function post(body, key) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(ENDPOINT, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json, application/problem+json",
        "Idempotency-Key": key,
      },
      body,
      signal: abort.signal,
    });
    const data = await response.json().catch(() => null);
    return { response, data };
  } finally {
    clearTimeout(timer);
  }
}

async function submit(event) {
  event.preventDefault();
  if (inFlight) return;
  const values = readForm();
  const errors = check(values);
  showFieldErrors(errors);
  if (Object.keys(errors).length) {
    askToCorrect(Object.keys(errors).length);
    return;
  }

  const body = JSON.stringify({
    customer: { email: values.email, name: values.name },
    item: values.item,
    quantity: Number(values.quantity),
    unit_price: values.unit_price,
    currency: values.currency,
  });
  if (pending?.body !== body) pending = { body, key: newKey() };

  inFlight = true;
  submitButton.disabled = true;
  form.setAttribute("aria-busy", "true");
  say("busy", "Recording your purchase…");
  try {
    const { response, data } = await post(body, pending.key);
    if (response.ok && !data) throw new TypeError("unreadable answer");
    if (response.ok) {
      pending = null;
      thanks(data);
      for (const id of ["item", "unit_price"]) input(id).value = "";
      input("quantity").value = "1";
    } else if (response.status >= 500) {
      say(
        "error",
        "The shop had a problem recording your purchase — please try again in a moment.",
        data?.request_id && `If it keeps happening, quote reference ${data.request_id}.`,
      );
    } else {
      explainProblem(response.status, data);
    }
  } catch (error) {
    say(
      "error",
      error.name === "AbortError"
        ? "The shop did not answer in time — check your connection and try again."
        : "Could not reach the shop — check your connection and try again.",
      "Trying again is safe: your purchase will not be recorded twice.",
    );
  } finally {
    inFlight = false;
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

form.addEventListener("submit", submit);
// The second click of a double click is not a second purchase, however fast the answer came.
submitButton.addEventListener("click", (event) => {
  if (event.detail > 1) event.preventDefault();
});
form.addEventListener("input", (event) => clearFieldError(event.target.id));
