// The price a user reads on a model node, on both hosts: the native badge's JSONata rule (ComfyUI 0.33's frontend
// evaluates it with the reference `jsonata` package, as here) and the pack's own badge (web/price.js, on ComfyUI 0.8),
// from the catalog (SONIFY_PRICES: a file written by tests/js/print_catalog.py; scripts/test.sh makes it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import jsonata from "jsonata";

import { priceText, takes } from "../../web/price.js";

const catalog = JSON.parse(readFileSync(process.env.SONIFY_PRICES, "utf8"));
const rule = (node) => catalog.route[node].rule;

// The context the frontend gives a badge's rule: {widgets: {name: value}} for the widgets it depends on, numbers
// as numbers and a widget the node lacks (a workflow saved before it was added) as null.
function context(badge, values) {
  const widgets = {};
  for (const { name, type } of badge.widgets) {
    const value = values[name];
    widgets[name] = value == null ? null : ["INT", "FLOAT"].includes(type) ? Number(value) : value;
  }
  return { widgets, inputs: {}, inputGroups: {} };
}

// What the native badge says for these widget values.
async function badgeText(node, values) {
  const badge = catalog.badges[node];
  const answer = await jsonata(badge.expr).evaluate(context(badge, values));
  assert.equal(answer.type, "text");
  return answer.text;
}

const CASES = {
  SonifyThinkSoundFal: [
    [{ variations: 1 }, "$0.001 per compute second"],
    [{ variations: 2 }, "$0.001 per compute second × 2 takes"],
  ],
  SonifyThinkSoundWaveSpeed: [[{ variations: 5 }, "price not published"]],
  // the model on both providers: the provider chosen (the first of "X, then Y"), each price on auto where they differ
  SonifyThinkSound: [
    [{ provider: "auto", variations: 2 }, "fal $0.001 per compute second · WaveSpeed price not published × 2 takes"],
    [{ variations: 1 }, "fal $0.001 per compute second · WaveSpeed price not published"], // saved before `provider`
    [{ provider: "wavespeed", variations: 3 }, "price not published"],
    [{ provider: "fal, then wavespeed", variations: 2 }, "$0.001 per compute second × 2 takes"],
  ],
  SonifyMMAudioV2: [
    [{ duration: 0, variations: 1 }, "$0.001/s of clip"],
    [{ duration: 5, variations: 1 }, "$0.005/job"],
    [{ duration: 30, variations: 1 }, "$0.030/job"],
    [{ duration: 8, variations: 4 }, "$0.008/job × 4 takes"],
    [{ duration: 0, variations: 2 }, "$0.001/s of clip × 2 takes"],
    [{ duration: 12 }, "$0.012/job"], // saved before `variations` existed
    [{ provider: "fal", duration: 8, variations: 1 }, "$0.008/job"], // fal's price is the same
    [{ provider: "wavespeed, then fal", duration: 0, variations: 3 }, "$0.001/s of clip × 3 takes"],
  ],
  SonifyKlingVideoToAudio: [
    [{ variations: 1 }, "$0.035/job"],
    [{ variations: 3 }, "$0.035/job × 3 takes"],
    [{}, "$0.035/job"],
    [{ provider: "fal", variations: 2 }, "$0.035/job × 2 takes"],
  ],
  SonifySyncLipsync: [[{ provider: "wavespeed" }, "price not published"]],
  SonifySyncLipsync2: [[{}, "$3.000/min of clip"]],
  SonifySyncLipsync2Pro: [[{}, "price not published"]],
  SonifySync3: [[{ provider: "fal" }, "$8.000/min of clip"]],
  SonifyKlingLipsync: [[{}, "$0.014/s of clip, 5 s steps"]],
  // fal's "$0.1 per 10 seconds", by started 10 s; WaveSpeed publishes none
  SonifyHunyuanFoley: [
    [{ provider: "auto", variations: 1 }, "fal $0.100/10 s of clip · WaveSpeed price not published"],
    [{ provider: "auto", variations: 3 }, "fal $0.100/10 s of clip · WaveSpeed price not published × 3 takes"],
    [{ provider: "fal, then wavespeed", variations: 2 }, "$0.100/10 s of clip × 2 takes"],
    [{ provider: "wavespeed", variations: 2 }, "price not published"],
  ],
  SonifyLatentSync: [
    [{ provider: "fal" }, "$0.005/s of clip, at least $0.200"],
    [{ provider: "wavespeed" }, "$0.150/5 s of clip"],
    [{ provider: "auto" }, "fal $0.005/s of clip, at least $0.200 · WaveSpeed $0.150/5 s of clip"],
  ],
};

test("every model node has a native badge, depending only on its price's widgets", () => {
  assert.deepEqual(Object.keys(catalog.badges).sort(), Object.keys(catalog.route).sort());
  assert.deepEqual(Object.keys(CASES).sort(), Object.keys(catalog.route).sort());
  assert.deepEqual(catalog.badges.SonifyMMAudioV2.widgets,
    [{ name: "duration", type: "INT" }, { name: "variations", type: "INT" }]); // the same price on either provider
  assert.deepEqual(catalog.badges.SonifyThinkSound.widgets, [{ name: "provider", type: "COMBO" }, { name: "variations", type: "INT" }]);
  assert.deepEqual(catalog.badges.SonifyThinkSoundFal.widgets, [{ name: "variations", type: "INT" }]);
  assert.deepEqual(catalog.badges.SonifyKlingLipsync.widgets, []);
});

for (const [node, cases] of Object.entries(CASES)) {
  test(`${node}: the native badge (JSONata) and the pack's own badge say the same`, async () => {
    for (const [values, expected] of cases) {
      assert.equal(await badgeText(node, values), expected, JSON.stringify(values));
      assert.equal(priceText(catalog.route[node], values), expected, JSON.stringify(values));
    }
  });
}

test("the badge follows the catalog's rate: the per-second price times the seconds widget", async () => {
  const mmaudio = rule("SonifyMMAudioV2");
  assert.equal(mmaudio.per, "second");
  assert.equal(mmaudio.param, "duration");
  for (let seconds = 1; seconds <= mmaudio.max; seconds += 1) {
    assert.equal(await badgeText("SonifyMMAudioV2", { duration: seconds }), `$${(mmaudio.usd * seconds).toFixed(3)}/job`);
  }
  assert.equal(await badgeText("SonifyKlingVideoToAudio", {}), `$${rule("SonifyKlingVideoToAudio").usd.toFixed(3)}/job`);
});

test("takes count only from 2, as whole numbers", () => {
  assert.equal(takes({ variations: 1 }), 1);
  assert.equal(takes({ variations: 8 }), 8);
  assert.equal(takes({ variations: 2.5 }), 1);
  assert.equal(takes({}), 1);
});
