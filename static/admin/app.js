// The owner's dashboard: sign-in, the overview (figures, chart, table), the purchase and
// customer lists, and a customer's page with corrections and erasure. Views are chosen by the
// URL's fragment (#/customers/12); the token never appears in a URL.

import { api, ApiError, query, token } from "/static/admin/api.js";
import { drawChart } from "/static/admin/chart.js";
import { day, fillRows, link, money, when } from "/static/admin/format.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;

function say(message, kind = "info") {
  const status = $("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut("Your token is no longer accepted. Sign in again.");
    return;
  }
  say(error.message, "error");
}

// --- sign-in ---

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  const error = $("signin-error");
  if (!value) {
    error.textContent = "Enter the admin token.";
    $("token").focus();
    return;
  }
  try {
    await api("/api/v1/audit?limit=1", { bearer: value });
  } catch (failure) {
    error.textContent =
      failure.status === 401
        ? "That token is not valid. Check it and try again."
        : failure.message;
    $("token").setAttribute("aria-invalid", "true");
    $("token").focus();
    return;
  }
  token.set(value);
  $("token").value = "";
  error.textContent = "";
  $("token").removeAttribute("aria-invalid");
  show();
}

function signOut(message = "") {
  token.forget();
  $("dashboard").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("token").focus();
}

function show() {
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  route();
}

// --- routing ---

const VIEWS = ["overview", "purchases", "customers", "customer"];

function route() {
  if (!token.get()) return;
  const [, view = "overview", id] = location.hash.split("/");
  const name = view === "customers" && id ? "customer" : VIEWS.includes(view) ? view : "overview";
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) {
    const current = a.dataset.view === (name === "customer" ? "customers" : name);
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  say("");
  const load = {
    overview: loadOverview,
    purchases: () => loadPurchases(null),
    customers: () => loadCustomers(null),
    customer: () => loadCustomer(Number(id)),
  }[name];
  load().catch(failed);
}

// --- overview ---

const isoDate = (date) => date.toISOString().slice(0, 10);

function todayIn(tz) {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(new Date());
}

// The last `days` local days, today included, in the zone.
function lastDays(days, tz) {
  const to = todayIn(tz);
  const from = new Date(`${to}T00:00:00Z`);
  from.setUTCDate(from.getUTCDate() - (days - 1));
  return { from: isoDate(from), to };
}

function rangeParams() {
  const tz = $("tz").value.trim() || "UTC";
  const range = $("range").value;
  if (range === "custom") return { from: $("from").value, to: $("to").value, tz };
  return { ...lastDays(Number(range), tz), tz };
}

async function loadOverview() {
  let params;
  try {
    params = rangeParams();
  } catch {
    say("That time zone is not known; use a name such as Europe/Berlin.", "error");
    return;
  }
  const { body: stats } = await api(`/api/v1/stats/daily${query(params)}`);
  const t = stats.totals;
  $("fig-purchases").textContent = String(t.purchases);
  $("fig-revenue").textContent = money(t.revenue);
  $("fig-aov").textContent = money(t.average_order_value);
  $("fig-new").textContent = String(t.new_customers);
  $("fig-returning").textContent = String(t.returning_customers);
  const currencies = Object.keys(t.revenue);
  drawChart($("chart"), stats.days, currencies);
  fillRows($("daily-table").tBodies[0], stats.days, (d) => [d.date, d.purchases, money(d.revenue)]);
  $("daily-caption").textContent = `Per day, ${stats.from} to ${stats.to} (${stats.tz})`;
}

function onRangeChange() {
  const custom = $("range").value === "custom";
  for (const el of document.querySelectorAll(".custom-date")) el.hidden = !custom;
  if (custom && !$("from").value) {
    const { from, to } = lastDays(30, $("tz").value.trim() || "UTC");
    $("from").value = from;
    $("to").value = to;
  }
}

// --- the two lists: keyset pages, newest first ---

// A list view: `name` names its table and buttons, `filter()` gives its query parameters.
function pagedList(name, path, filter, cells) {
  const state = { next: null };
  const load = async (cursor) => {
    const { body } = await api(`${path}${query({ ...filter(), limit: PAGE, cursor })}`);
    fillRows($(`${name}-table`).tBodies[0], body.items, cells);
    state.next = body.next_cursor;
    $(`${name}-next`).disabled = !body.next_cursor;
    $(`${name}-first`).disabled = !cursor;
  };
  $(`${name}-next`).addEventListener("click", () => load(state.next).catch(failed));
  $(`${name}-first`).addEventListener("click", () => load(null).catch(failed));
  return load;
}

const loadPurchases = pagedList(
  "purchases",
  "/api/v1/purchases",
  () => ({ customer_email: $("purchase-email").value.trim() }),
  (p) => [
    p.id,
    when(p.purchased_at),
    link(`#/customers/${p.customer.id}`, p.customer.email),
    p.item,
    p.quantity,
    `${p.currency} ${p.total}`,
  ],
);

const loadCustomers = pagedList(
  "customers",
  "/api/v1/customers",
  () => ({ email_prefix: $("customer-prefix").value.trim() }),
  (c) => [c.id, link(`#/customers/${c.id}`, c.name), c.email, day(c.created_at)],
);

// --- one customer ---

const current = { id: null, etag: null, customer: null };

async function loadCustomer(id) {
  const { body: customer, headers } = await api(`/api/v1/customers/${id}`);
  Object.assign(current, { id, etag: headers.get("ETag"), customer });
  $("customer-title").textContent = `Customer ${id}${customer.erased ? " (erased)" : ""}`;
  $("customer-email").textContent = customer.email;
  $("customer-name").textContent = customer.name;
  $("customer-since").textContent = when(customer.created_at);
  $("customer-count").textContent = String(customer.purchase_count);
  $("customer-totals").textContent = money(customer.totals);
  $("edit-name").value = customer.name;
  $("edit-email").value = customer.email;
  $("correct-error").textContent = "";
  $("correct-form").hidden = customer.erased;
  $("erase").hidden = customer.erased;
  const { body: history } = await api(
    `/api/v1/purchases${query({ customer_email: customer.email, limit: 100 })}`,
  );
  fillRows($("history-table").tBodies[0], history.items, (p) => [
    p.id,
    when(p.purchased_at),
    p.item,
    p.quantity,
    `${p.currency} ${p.total}`,
  ]);
}

async function correct(event) {
  event.preventDefault();
  const patch = {};
  const name = $("edit-name").value.trim();
  const email = $("edit-email").value.trim();
  if (name !== current.customer.name) patch.name = name;
  if (email.toLowerCase() !== current.customer.email) patch.email = email;
  if (!Object.keys(patch).length) {
    $("correct-error").textContent = "Nothing changed.";
    return;
  }
  try {
    await api(`/api/v1/customers/${current.id}`, {
      method: "PATCH",
      body: patch,
      headers: { "If-Match": current.etag },
    });
  } catch (error) {
    if (error.status === 401) return failed(error);
    const detail = error.problem?.errors?.map((e) => `${e.field}: ${e.message}`).join("; ");
    $("correct-error").textContent =
      error.status === 412
        ? "Someone changed this customer meanwhile. The page now shows the latest; check and save again."
        : detail || error.message;
    if (error.status === 412) await loadCustomer(current.id).catch(failed);
    return;
  }
  await loadCustomer(current.id);
  say("Correction saved.", "success");
}

function askErase() {
  $("erase-dialog").showModal();
}

async function onEraseDialogClose() {
  if ($("erase-dialog").returnValue !== "erase") {
    $("erase").focus();
    return;
  }
  try {
    await api(`/api/v1/customers/${current.id}`, { method: "DELETE" });
  } catch (error) {
    failed(error);
    return;
  }
  await loadCustomer(current.id).catch(failed);
  say("The customer was erased. Their purchases stay, without their name or email.", "success");
  $("customer-title").focus();
}

// --- wiring ---

function fillZones() {
  const zones = Intl.supportedValuesOf?.("timeZone") ?? [];
  $("zones").replaceChildren(
    ...["UTC", ...zones].map((zone) => Object.assign(document.createElement("option"), { value: zone })),
  );
}

function wire() {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut("You are signed out."));
  $("range-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadOverview().catch(failed);
  });
  $("range").addEventListener("change", onRangeChange);
  $("purchase-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    loadPurchases(null).catch(failed);
  });
  $("customer-search").addEventListener("submit", (e) => {
    e.preventDefault();
    loadCustomers(null).catch(failed);
  });
  $("correct-form").addEventListener("submit", correct);
  $("erase").addEventListener("click", askErase);
  $("erase-dialog").addEventListener("close", onEraseDialogClose);
  window.addEventListener("hashchange", route);
  $("customer-title").tabIndex = -1;
}

wire();
fillZones();
onRangeChange();
if (token.get()) show();
else $("token").focus();
