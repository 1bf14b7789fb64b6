// The settings dialog's spend section (web/spend.js): the requests it makes, and what it says of the spend.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SETTINGS, balanceText, readBalance, readSpend, saveSpend, settingNote, spendText } from "../../web/spend.js";

function recorder(status = 200, body = {}) {
  const calls = [];
  const fetchApi = async (path, options) => {
    calls.push({ path, ...options });
    return { ok: status < 400, status, json: async () => body };
  };
  return { calls, fetchApi };
}

test("save posts each setting as typed, an empty field as null (removed)", async () => {
  const { calls, fetchApi } = recorder(200, { today_usd: 0, month_usd: 0, settings: {} });
  await saveSpend(fetchApi, { SONIFY_MAX_USD_PER_DAY: " 5 ", SONIFY_MAX_USD_PER_MONTH: "" });
  assert.deepEqual(calls, [{ path: "/sonify/spend", method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ SONIFY_MAX_USD_PER_DAY: "5", SONIFY_MAX_USD_PER_MONTH: null }) }]);
});

test("read and balance go to their routes without a body; a refusal is an error with the server's words", async () => {
  const { calls, fetchApi } = recorder(200, {});
  await readSpend(fetchApi);
  await readBalance(fetchApi);
  assert.deepEqual(calls.map((c) => [c.method, c.path, c.body]), [["GET", "/sonify/spend", undefined],
    ["GET", "/sonify/balance", undefined]]);
  const refused = recorder(400, { error: "SONIFY_MAX_USD_PER_DAY must be a number of US dollars" });
  await assert.rejects(saveSpend(refused.fetchApi, { SONIFY_MAX_USD_PER_DAY: "lots" }), /SONIFY_MAX_USD_PER_DAY/);
});

test("the spend line gives today and this month against their caps", () => {
  const state = { today_usd: 0.045, month_usd: 1.2, settings: {
    SONIFY_MAX_USD_PER_DAY: { usd: 1, from: "settings" }, SONIFY_MAX_USD_PER_MONTH: { usd: null, from: null } } };
  assert.equal(spendText(state), "Spent today $0.045 of the $1.000 daily cap; this month $1.200.");
  assert.equal(settingNote({ usd: 2, from: "environment" }), "set by the environment variable (it wins over this field)");
  assert.equal(settingNote({ usd: 2, from: "settings" }), "");
  assert.deepEqual(Object.keys(SETTINGS).sort(), ["SONIFY_MAX_USD_PER_DAY", "SONIFY_MAX_USD_PER_JOB",
    "SONIFY_MAX_USD_PER_MONTH", "SONIFY_MAX_USD_PER_RUN", "SONIFY_MIN_BALANCE_USD"]);
});

test("the balances line names each provider", () => {
  const text = balanceText({ wavespeed: { balance_usd: 12.5, message: "balance $12.50" },
    fal: { balance_usd: null, message: "fal shows its balance only to a key with billing access" } },
  { wavespeed: "WaveSpeed", fal: "fal" });
  assert.equal(text, "WaveSpeed: balance $12.50 · fal: fal shows its balance only to a key with billing access");
});
