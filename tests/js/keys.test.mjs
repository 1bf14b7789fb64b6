// The settings dialog's calls (web/keys.js): the requests it makes, and what it says of a key's state.
import assert from "node:assert/strict";
import { test } from "node:test";

import { readEmulator, readKeys, removeKey, saveKey, setEmulator, statusText, testKey, testText } from "../../web/keys.js";

function recorder(status = 200, body = {}) {
  const calls = [];
  const fetchApi = async (path, options) => {
    calls.push({ path, ...options });
    return { ok: status < 400, status, json: async () => body };
  };
  return { calls, fetchApi };
}

test("save posts the key once, as JSON, to the pack's route", async () => {
  const { calls, fetchApi } = recorder(200, { fal: { set: true, source: "key file", hint: "…cret" } });
  const answer = await saveKey(fetchApi, "fal", "id:secret");
  assert.deepEqual(calls, [{ path: "/sonify/keys", method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ provider: "fal", key: "id:secret" }) }]);
  assert.equal(answer.fal.hint, "…cret");
});

test("read, remove and test go to their routes without a body", async () => {
  const { calls, fetchApi } = recorder(200, {});
  await readKeys(fetchApi);
  await removeKey(fetchApi, "wavespeed");
  await testKey(fetchApi, "wavespeed");
  assert.deepEqual(calls.map((c) => [c.method, c.path, c.body]), [
    ["GET", "/sonify/keys", undefined],
    ["DELETE", "/sonify/keys/wavespeed", undefined],
    ["POST", "/sonify/keys/wavespeed/test", undefined],
  ]);
});

test("a refusal becomes an error with the server's words", async () => {
  const { fetchApi } = recorder(403, { error: "refused: the request comes from another site" });
  await assert.rejects(saveKey(fetchApi, "wavespeed", "k"), /another site/);
});

test("the dialog says where a key comes from, and that the environment wins", () => {
  assert.equal(statusText("wavespeed", { set: false, source: null, hint: null }), "No key set.");
  assert.equal(statusText("fal", { set: true, source: "key file", hint: "…9f8e" }), "Key …9f8e saved in Sonify's key file.");
  assert.match(statusText("wavespeed", { set: true, source: "environment", hint: "…cdef" }),
    /^Key …cdef from the environment variable WAVESPEED_API_KEY: it wins over the key file/);
});

test("a key check shows the WaveSpeed balance", () => {
  assert.equal(testText({ ok: true, message: "https://api.wavespeed.ai accepts the key", balance_usd: 12.5 }),
    "Works: https://api.wavespeed.ai accepts the key. Balance $12.50.");
  assert.equal(testText({ ok: false, message: "the provider refused the key (HTTP 401)" }),
    "Not working: the provider refused the key (HTTP 401)");
});

test("the emulator setting posts on or off", async () => {
  const { calls, fetchApi } = recorder(200, { on: true, from_environment: false });
  assert.deepEqual(await setEmulator(fetchApi, true), { on: true, from_environment: false });
  assert.deepEqual(calls, [{ path: "/sonify/emulator", method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ on: true }) }]);
});

test("with the emulator on, a key's line says it is not needed now, and why the emulator is on", () => {
  assert.equal(statusText("fal", { set: false }, { on: true, from_environment: true }),
    "No key set. Not needed now: the emulator is on (SONIFY_EMULATOR=1 at ComfyUI's start).");
  assert.equal(statusText("wavespeed", { set: true, source: "key file", hint: "…abcd" }, { on: true }),
    "Key …abcd saved in Sonify's key file. Not needed now: the emulator is on.");
  assert.equal(statusText("fal", { set: false }, { on: false, from_environment: false }), "No key set.");
});

test("the emulator's state is read from the pack's route", async () => {
  const { calls, fetchApi } = recorder(200, { on: true, from_environment: false });
  assert.deepEqual(await readEmulator(fetchApi), { on: true, from_environment: false });
  assert.deepEqual(calls, [{ path: "/sonify/emulator", method: "GET" }]);
});
