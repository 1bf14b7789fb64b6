// The settings dialog's spend section: the caps and the balance floor (kept in Sonify's journal on the server,
// where every ComfyUI and command-line process sharing it obeys them), what was spent today and this month, and
// each provider's balance. Pure: `fetchApi` is ComfyUI's api.fetchApi (or a test's).

import { answer } from "./keys.js";

export const SETTINGS = {
  SONIFY_MAX_USD_PER_DAY: "Per day",
  SONIFY_MAX_USD_PER_MONTH: "Per month",
  SONIFY_MAX_USD_PER_RUN: "Per run (a queued workflow, a batch)",
  SONIFY_MAX_USD_PER_JOB: "Per job (a node run's estimate)",
  SONIFY_MIN_BALANCE_USD: "Balance floor (WaveSpeed)",
};

export async function readSpend(fetchApi) {
  return answer(await fetchApi("/sonify/spend", { method: "GET" }));
}

// values: {variable: dollars as typed ("" removes it)}; the server checks each and answers with the new state.
export async function saveSpend(fetchApi, values) {
  const body = Object.fromEntries(Object.entries(values).map(([name, text]) => [name, String(text).trim() || null]));
  return answer(await fetchApi("/sonify/spend", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }));
}

export async function readBalance(fetchApi) {
  return answer(await fetchApi("/sonify/balance", { method: "GET" }));
}

const usd = (amount) => `$${amount.toFixed(3)}`;

// One line: today and this month, each against its cap ({today_usd, month_usd, settings} as GET /sonify/spend).
export function spendText(state) {
  const cap = (name) => state.settings?.[name]?.usd;
  const against = (name, words) => (cap(name) == null ? "" : ` of the ${usd(cap(name))} ${words} cap`);
  return `Spent today ${usd(state.today_usd)}${against("SONIFY_MAX_USD_PER_DAY", "daily")}; ` +
    `this month ${usd(state.month_usd)}${against("SONIFY_MAX_USD_PER_MONTH", "monthly")}.`;
}

// What a setting's field says: its value, and that an environment variable set it (and wins over the field).
export function settingNote(setting) {
  return setting?.from === "environment" ? "set by the environment variable (it wins over this field)" : "";
}

// One line on the balances ({provider: {balance_usd, message}} as GET /sonify/balance).
export function balanceText(balances, names) {
  return Object.entries(balances).map(([provider, found]) => `${names[provider] ?? provider}: ${found.message}`)
    .join(" · ");
}
