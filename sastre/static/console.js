// Sastre staff console: plain JavaScript over the staff JSON API, no build step.
//
// Every piece of customer data is untrusted (names, messages, attributes come from customers
// and imports): it reaches the page only through textContent and createElement, never through
// innerHTML. The page's Content-Security-Policy demands Trusted Types, so an innerHTML string
// assignment would throw instead of rendering markup.

const TOKEN_KEY = "sastre.token";
const WRITE_TIMELINE = "timeline:write";

// Maps, not object literals: a lookup of "constructor" or "toString" must find nothing.
const TIER_NAMES = new Map([
  ["CMV", "most valuable"],
  ["CMP", "most potential"],
  ["STANDARD", "standard"],
  ["BZ", "below zero"],
]);
const LOOKUP_KINDS = new Map([
  ["email", "email"],
  ["phone", "phone"],
  ["telegram", "telegram"],
  ["webchat", "webchat"],
  ["external_id", "external_id"],
  ["external", "external_id"], // as `sastre customer show` spells it
]);
const INTERACTION_KINDS = new Map([
  ["message_in", "Message in"],
  ["message_out", "Message out"],
  ["callback", "Call-back"],
  ["note", "Note"],
  ["purchase", "Purchase"],
  ["complaint", "Complaint"],
]);

const $ = (id) => document.getElementById(id);

const state = {
  me: null, // {name, role, permissions} once the token is accepted
  customerId: null, // the customer on screen
  searchSeq: 0, // answers to older searches are dropped
};

class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

// --- the API ----------------------------------------------------------------------------------

async function api(path, { method = "GET", json } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin("Sign in to continue.");
    throw new ApiError(401, "not signed in");
  }
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "Sastre cannot be reached. Check the connection and try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null; // not JSON: a proxy's error page, say
  }
  if (response.ok) {
    return body;
  }
  const message =
    (body && typeof body.error === "string" && body.error) || `HTTP ${response.status}`;
  const error = new ApiError(response.status, message, body ? body.detail : undefined);
  if (response.status === 401) {
    showLogin(
      state.me
        ? `Your token is no longer accepted (${message}). Sign in again.`
        : `That token was not accepted (${message}).`,
    );
  }
  throw error;
}

function describe(error) {
  if (!(error instanceof ApiError)) {
    return `Something went wrong: ${error}`;
  }
  const detail = error.detail;
  if (error.status === 403) {
    const needs = detail && typeof detail.needs === "string" ? ` (it needs ${detail.needs})` : "";
    return `Not allowed: ${error.message}${needs}.`;
  }
  if (Array.isArray(detail)) {
    const reasons = detail
      .filter((d) => d && typeof d === "object")
      .map((d) => `${d.field}: ${d.reason}`);
    return reasons.length ? `${error.message}: ${reasons.join("; ")}` : error.message;
  }
  if (detail && typeof detail === "object" && typeof detail.reason === "string") {
    return `${error.message}: ${detail.reason}`;
  }
  return error.message;
}

// --- small DOM helpers ------------------------------------------------------------------------

function el(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

function setMessage(node, text, kind = "info") {
  node.textContent = text || "";
  node.hidden = !text;
  node.classList.toggle("notice-error", kind === "error");
  node.classList.toggle("notice-ok", kind === "ok");
}

function announce(text) {
  const region = $("announce");
  region.textContent = "";
  // A fresh text node after a tick makes screen readers announce a repeat of the same words.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

function fact(list, term, value, className) {
  const shown = value === null || value === undefined || value === "" ? "—" : value;
  list.append(el("dt", { text: term }), el("dd", { text: shown, className }));
}

const numberFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function displayName(type, code) {
  if (!code) return null;
  try {
    const name = new Intl.DisplayNames(undefined, { type }).of(code);
    return name && name !== code ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

function localTime(timezone) {
  if (!timezone) return null;
  try {
    const time = new Intl.DateTimeFormat(undefined, { timeZone: timezone, timeStyle: "short" });
    return `${timezone} (now ${time.format(new Date())})`;
  } catch {
    return timezone;
  }
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
}

function attributeText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// --- signing in and out -----------------------------------------------------------------------

function showLogin(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  state.customerId = null;
  state.searchSeq += 1;
  clearCustomer();
  setMessage($("search-message"), "");
  $("query").value = "";
  $("search-button").disabled = false;
  $("workspace").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  setMessage($("login-error"), message, "error");
  const token = $("token");
  token.value = "";
  token.focus();
}

function showWorkspace() {
  $("session-name").textContent = state.me.name;
  $("session-role").textContent = state.me.role;
  $("session").hidden = false;
  $("login").hidden = true;
  setMessage($("login-error"), "");
  $("workspace").hidden = false;
  const mayWrite = state.me.permissions.includes(WRITE_TIMELINE);
  $("note-form").hidden = !mayWrite;
  $("note-forbidden").hidden = mayWrite;
  $("query").focus();
}

async function checkToken() {
  try {
    state.me = await api("/api/me");
  } catch (error) {
    if (error.status !== 401) {
      // The token may be fine and the server not: keep it, say so, let them retry.
      $("login").hidden = false;
      setMessage($("login-error"), describe(error), "error");
    }
    return;
  }
  showWorkspace();
}

async function onLogin(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) {
    setMessage($("login-error"), "Enter your staff API token.", "error");
    $("token").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const button = event.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  try {
    await checkToken();
  } finally {
    button.disabled = false;
  }
}

function onSignOut() {
  showLogin("");
  announce("Signed out.");
}

// --- finding a customer -----------------------------------------------------------------------

function byIdentity(key, value) {
  // URLSearchParams encodes "+" as %2B: a phone number must not arrive as " 34...".
  return { path: `/api/customers?${new URLSearchParams({ [key]: value })}` };
}

// One box: digits are an id, "kind:value" names the identity, "@" is an e-mail, "+" a phone.
function lookupPath(raw) {
  const query = raw.trim();
  if (!query) {
    return { problem: "Type an id, an e-mail, a phone number or kind:value." };
  }
  const prefixed = /^([a-z_]+):(.*)$/i.exec(query);
  if (prefixed) {
    const kind = prefixed[1].toLowerCase();
    const value = prefixed[2].trim();
    if (kind === "id") {
      return /^\d+$/.test(value) ? lookupPath(value) : { problem: "An id is digits only." };
    }
    if (LOOKUP_KINDS.has(kind)) {
      if (!value) return { problem: `Give a value after "${prefixed[1]}:".` };
      return byIdentity(LOOKUP_KINDS.get(kind), value);
    }
    if (!query.includes("@")) {
      const known = [...LOOKUP_KINDS.keys(), "id"].join(", ");
      return { problem: `Unknown kind "${prefixed[1]}": use one of ${known}.` };
    }
  }
  if (/^\d+$/.test(query)) {
    const id = query.replace(/^0+(?=\d)/, ""); // as a string: no float rounding of long ids
    return { path: `/api/customers/${id}`, id };
  }
  if (query.includes("@")) return byIdentity("email", query);
  if (query.startsWith("+")) return byIdentity("phone", query);
  return {
    problem:
      "Not understood: type an id (digits), an e-mail, a phone number starting with +, " +
      "or kind:value such as telegram:123456.",
  };
}

async function onSearch(event) {
  event.preventDefault();
  const message = $("search-message");
  const lookup = lookupPath($("query").value);
  if (lookup.problem) {
    setMessage(message, lookup.problem, "error");
    return;
  }
  const seq = ++state.searchSeq;
  const button = $("search-button");
  button.disabled = true;
  $("customer").setAttribute("aria-busy", "true");
  try {
    const view = await api(lookup.path);
    if (seq !== state.searchSeq) return;
    if (lookup.id !== undefined && String(view.id) !== lookup.id) {
      setMessage(message, `Customer ${lookup.id} was merged into customer ${view.id}.`);
    } else {
      setMessage(message, "");
    }
    showCustomer(view);
    announce(`Showing ${view.name || "an unnamed customer"}, ${view.tier}.`);
  } catch (error) {
    if (seq !== state.searchSeq || error.status === 401) return;
    clearCustomer();
    setMessage(message, describe(error), "error");
  } finally {
    if (seq === state.searchSeq) {
      button.disabled = false;
      $("customer").removeAttribute("aria-busy");
    }
  }
}

// --- the 360 view -----------------------------------------------------------------------------

function clearCustomer() {
  state.customerId = null;
  $("customer").hidden = true;
  $("customer").removeAttribute("aria-busy");
  for (const id of ["customer-name", "customer-meta", "tier-badge", "tier-reason"]) {
    $(id).textContent = "";
  }
  for (const id of ["profile", "value", "timeline"]) $(id).replaceChildren();
  for (const id of ["identities", "attributes"]) $(id).tBodies[0].replaceChildren();
  $("note").value = "";
  setMessage($("note-message"), "");
}

function showCustomer(view) {
  if (state.customerId !== view.id) {
    $("note").value = "";
    setMessage($("note-message"), "");
  }
  state.customerId = view.id;
  renderHeader(view);
  renderProfile(view);
  renderValue(view.value || {});
  renderIdentities(view.identities || []);
  renderAttributes(view.attributes || {});
  renderTimeline(view.interactions || []);
  $("customer").hidden = false;
}

function renderHeader(view) {
  const name = $("customer-name");
  name.textContent = view.name || "Unnamed customer";
  name.classList.toggle("unnamed", !view.name);
  $("customer-meta").textContent = `Customer ${view.id} · ${view.status}`;
  const tier = TIER_NAMES.has(view.tier) ? view.tier : "unknown";
  const badge = $("tier-badge");
  badge.className = `badge tier-${tier.toLowerCase()}`;
  badge.textContent = view.tier;
  badge.title = TIER_NAMES.has(view.tier)
    ? `Value tier: ${TIER_NAMES.get(view.tier)}`
    : "Value tier";
  badge.setAttribute("aria-label", `Value tier ${view.tier}`);
  $("tier-reason").textContent = view.tier_reason || "";
  const attributes = view.attributes || {};
  $("at-risk").hidden = attributes.churn_risk !== "high";
}

function renderProfile(view) {
  const list = $("profile");
  list.replaceChildren();
  fact(list, "Language", displayName("language", view.language));
  fact(list, "Time zone", localTime(view.timezone));
  fact(list, "Country", displayName("region", view.country));
  fact(list, "Customer since", view.created_at ? formatTime(view.created_at) : null);
}

function renderValue(value) {
  const list = $("value");
  list.replaceChildren();
  const figure = (term, amount) => {
    const known = typeof amount === "number";
    const className = known && amount < 0 ? "negative" : undefined;
    fact(list, term, known ? numberFormat.format(amount) : null, className);
  };
  figure("Revenue", value.revenue);
  figure("Cost to serve", value.cost_to_serve);
  figure("Profit", value.profit);
  figure("Potential value", value.potential_value);
}

function renderIdentities(identities) {
  const body = $("identities").tBodies[0];
  body.replaceChildren(
    ...identities.map((identity) =>
      el("tr", {}, [
        el("td", { text: identity.kind }),
        el("td", { text: identity.value, className: "mono" }),
        el("td", {
          text: identity.verified ? "✓ Verified" : "Not verified",
          className: identity.verified ? "verified" : "unverified",
        }),
      ]),
    ),
  );
  $("identities").hidden = identities.length === 0;
  $("identities-empty").hidden = identities.length !== 0;
}

function renderAttributes(attributes) {
  const keys = Object.keys(attributes).sort();
  const body = $("attributes").tBodies[0];
  body.replaceChildren(
    ...keys.map((key) => {
      const risky = key === "churn_risk" && attributes[key] === "high";
      const value = el("td", { text: attributeText(attributes[key]) });
      if (risky) value.append(" ", el("span", { className: "flag", text: "at risk" }));
      return el("tr", { className: risky ? "at-risk-row" : undefined }, [
        el("th", { text: key, attrs: { scope: "row" } }),
        value,
      ]);
    }),
  );
  $("attributes").hidden = keys.length === 0;
  $("attributes-empty").hidden = keys.length !== 0;
}

function renderTimeline(interactions) {
  // The API answers newest first; keep its order (it breaks ties by id, which we cannot see).
  const list = $("timeline");
  list.replaceChildren(
    ...interactions.map((item) => {
      const meta = el("p", { className: "event-meta" }, [
        el("span", {
          className: `kind kind-${String(item.kind).replace(/[^a-z_]/g, "")}`,
          text: INTERACTION_KINDS.get(item.kind) || item.kind,
        }),
      ]);
      if (item.channel) {
        meta.append(el("span", { className: "channel", text: `via ${item.channel}` }));
      }
      meta.append(
        el("time", { text: formatTime(item.occurred_at), attrs: { datetime: item.occurred_at } }),
      );
      if (item.actor) meta.append(el("span", { className: "actor", text: `by ${item.actor}` }));
      const summary = el("p", { className: "summary", text: item.summary });
      return el("li", { className: "event" }, [meta, summary]);
    }),
  );
  $("timeline-empty").hidden = interactions.length !== 0;
}

// --- adding a note ----------------------------------------------------------------------------

async function onAddNote(event) {
  event.preventDefault();
  const message = $("note-message");
  const customerId = state.customerId;
  const summary = $("note").value.trim();
  if (customerId === null) return;
  if (!summary) {
    setMessage(message, "Write the note first.", "error");
    $("note").focus();
    return;
  }
  const button = $("note-button");
  button.disabled = true;
  try {
    await api(`/api/customers/${customerId}/interactions`, {
      method: "POST",
      json: { kind: "note", summary },
    });
    if (state.customerId !== customerId) return;
    $("note").value = "";
    const view = await api(`/api/customers/${customerId}`);
    if (state.customerId !== customerId) return;
    showCustomer(view);
    setMessage(message, "Note added.", "ok");
  } catch (error) {
    if (error.status !== 401 && state.customerId === customerId) {
      setMessage(message, describe(error), "error");
    }
  } finally {
    button.disabled = false;
  }
}

function onNoteKey(event) {
  // Ctrl+Enter (or Cmd+Enter) saves, as in most note fields; plain Enter is a new line.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("note-form").requestSubmit();
  }
}

// --- start ------------------------------------------------------------------------------------

function start() {
  $("login-form").addEventListener("submit", onLogin);
  $("sign-out").addEventListener("click", onSignOut);
  $("search-form").addEventListener("submit", onSearch);
  $("note-form").addEventListener("submit", onAddNote);
  $("note").addEventListener("keydown", onNoteKey);
  if (sessionStorage.getItem(TOKEN_KEY)) {
    checkToken();
  } else {
    showLogin("");
  }
}

start();
