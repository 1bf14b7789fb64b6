// The badge's arithmetic (web/price.js) against the catalog the pack's route serves (SONIFY_PRICES: a file
// written by tests/js/print_catalog.py; scripts/test.sh makes it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { billedSeconds, estimate } from "../../web/price.js";

const catalog = JSON.parse(readFileSync(process.env.SONIFY_PRICES, "utf8"));
const rule = (node) => catalog[node].rule;

test("MMAudio is billed per second of requested audio", () => {
  const mmaudio = rule("SonifyMMAudioV2");
  assert.deepEqual(estimate(mmaudio, { duration: 8 }), { usd: 0.008, text: "$0.008 (8 s × $0.001)" });
  assert.equal(estimate(mmaudio, { duration: 30 }).usd, 0.03);
  assert.ok(estimate(mmaudio, { duration: 9 }).usd > estimate(mmaudio, { duration: 8 }).usd);
});

test("duration 0 is a rate until the clip's length is known, then its whole seconds", () => {
  const mmaudio = rule("SonifyMMAudioV2");
  assert.deepEqual(estimate(mmaudio, { duration: 0 }), { usd: null, text: "$0.001 per second of the clip" });
  assert.equal(billedSeconds(mmaudio, { duration: 0 }, 2.5), 3); // rounded up, as the engine asks
  assert.equal(billedSeconds(mmaudio, { duration: 0 }, 3.0), 3);
  assert.equal(billedSeconds(mmaudio, { duration: 0 }, 0.2), 1);
  assert.equal(billedSeconds(mmaudio, { duration: 0 }, 95), mmaudio.max); // the parameter's range
  assert.equal(estimate(mmaudio, { duration: 0 }, 2.5).text, "$0.003 (3 s × $0.001)");
});

test("Kling is per job, times the takes where the node has variations", () => {
  const kling = rule("SonifyKlingVideoToAudio");
  assert.deepEqual(estimate(kling, { asmr_mode: true }), { usd: 0.035, text: "$0.035" });
  const four = estimate(kling, { variations: 4 });
  assert.equal(four.text, "$0.140 ($0.035 × 4 takes)");
  assert.ok(Math.abs(four.usd - 0.14) < 1e-12);
  assert.equal(estimate(rule("SonifyMMAudioV2"), { duration: 5, variations: 2 }).text, "$0.010 (5 s × $0.001 × 2 takes)");
});

test("a model without a published price says so", () => {
  assert.deepEqual(estimate(rule("SonifyThinkSoundWaveSpeed"), { seed: -1 }), { usd: null, text: "price not published" });
  assert.deepEqual(estimate(rule("SonifySyncLipsync"), {}), { usd: null, text: "price not published" });
  const fal = estimate(rule("SonifyThinkSoundFal"), { num_inference_steps: 24 });
  assert.equal(fal.usd, null);
  assert.equal(fal.text, "$0.001 per compute second");
});

test("every model node in the catalog gets an estimate text", () => {
  assert.deepEqual(Object.keys(catalog).sort(), ["SonifyKlingVideoToAudio", "SonifyMMAudioV2", "SonifySyncLipsync",
    "SonifyThinkSoundFal", "SonifyThinkSoundWaveSpeed"]);
  for (const node of Object.keys(catalog)) assert.ok(estimate(rule(node), { duration: 4 }).text.length > 0);
});
