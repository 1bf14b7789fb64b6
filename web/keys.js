// The settings dialog's calls to the pack's key routes, and what the dialog says of a key. Pure: `fetchApi`
// is ComfyUI's api.fetchApi (or a test's), so Node's test runner checks the calls. A key typed in goes out
// once, in a POST body; nothing here stores it (no setting value, no localStorage) or shows it.

export const PROVIDERS = { wavespeed: "WaveSpeed", fal: "fal" };
const ENV_NAMES = { wavespeed: "WAVESPEED_API_KEY", fal: "FAL_KEY" };

// A pack route's JSON answer, or an Error with the route's own message (shared by the settings dialog's sections).
export async function answer(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

export async function readKeys(fetchApi) {
  return answer(await fetchApi("/sonify/keys", { method: "GET" }));
}

export async function saveKey(fetchApi, provider, key) {
  return answer(await fetchApi("/sonify/keys", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ provider, key }),
  }));
}

export async function removeKey(fetchApi, provider) {
  return answer(await fetchApi(`/sonify/keys/${encodeURIComponent(provider)}`, { method: "DELETE" }));
}

export async function testKey(fetchApi, provider) {
  return answer(await fetchApi(`/sonify/keys/${encodeURIComponent(provider)}/test`, { method: "POST" }));
}

// Emulator mode: {on, from_environment} as GET /sonify/emulator answers.
export async function readEmulator(fetchApi) {
  return answer(await fetchApi("/sonify/emulator", { method: "GET" }));
}

// One line on a key's state: {set, source, hint} as GET /sonify/keys answers; and, with emulator mode on
// ({on, from_environment}), that the nodes do not need it now (the switch below shows only this browser's choice:
// SONIFY_EMULATOR=1 at ComfyUI's start turns the emulator on whatever it says).
export function statusText(provider, status, emulator = null) {
  const now = !emulator?.on ? "" : " Not needed now: the emulator is on" +
    (emulator.from_environment ? " (SONIFY_EMULATOR=1 at ComfyUI's start)." : ".");
  return keyText(provider, status) + now;
}

function keyText(provider, status) {
  if (!status || !status.set) return "No key set.";
  if (status.source === "environment") {
    return `Key ${status.hint} from the environment variable ${ENV_NAMES[provider]}: it wins over the key file ` +
      "(unset it and restart ComfyUI to use a key saved here).";
  }
  return `Key ${status.hint} saved in Sonify's key file.`;
}

// One line on a key check: {ok, message, balance_usd, emulator} as POST /sonify/keys/{provider}/test answers.
export function testText(result) {
  if (!result.ok) return `Not working: ${result.message}`;
  const balance = result.balance_usd == null ? "" : ` Balance $${result.balance_usd.toFixed(2)}.`;
  return `Works: ${result.message}.${balance}`;
}

// Emulator mode on or off (the setting "Use the local emulator"): {on, from_environment}.
export async function setEmulator(fetchApi, on) {
  return answer(await fetchApi("/sonify/emulator", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ on }),
  }));
}
