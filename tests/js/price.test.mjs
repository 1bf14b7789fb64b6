// The badge's arithmetic (web/price.js) against the catalog the pack's route serves (SONIFY_PRICES: a file
// written by tests/js/print_catalog.py; scripts/test.sh makes it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { billedSeconds, estimate, estimateFor } from "../../web/price.js";

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
  for (const node of ["SonifyKlingVideoToAudio", "SonifyMMAudioV2", "SonifySyncLipsync", "SonifyThinkSoundFal",
    "SonifyThinkSoundWaveSpeed", "SonifyThinkSound"]) assert.ok(node in catalog, node);
  for (const node of Object.keys(catalog)) {
    assert.ok(estimate(rule(node), { duration: 4 }).text.length > 0);
    assert.ok(estimateFor(catalog[node], { duration: 4 }, 4).text.length > 0);
  }
});

test("the badge follows the provider chosen, and shows both on auto where they differ", () => {
  const thinksound = catalog.SonifyThinkSound;
  assert.deepEqual(Object.keys(thinksound.providers).sort(), ["fal", "wavespeed"]);
  assert.equal(estimateFor(thinksound, { provider: "wavespeed" }).text, "price not published");
  assert.equal(estimateFor(thinksound, { provider: "fal, then wavespeed" }).text, "$0.001 per compute second");
  assert.equal(estimateFor(thinksound, { provider: "auto" }).text,
    "fal $0.001 per compute second · WaveSpeed price not published");
  const mmaudio = catalog.SonifyMMAudioV2;
  assert.equal(mmaudio.providers.fal.param, "duration"); // the node's name for it
  assert.deepEqual(estimateFor(mmaudio, { provider: "fal", duration: 8 }), { usd: 0.008, text: "$0.008 (8 s × $0.001)" });
  assert.deepEqual(estimateFor(mmaudio, { duration: 8 }), { usd: 0.008, text: "$0.008 (8 s × $0.001)" }); // the same
  const kling = catalog.SonifyKlingVideoToAudio;
  assert.equal(estimateFor(kling, { provider: "fal", variations: 2 }).text, "$0.070 ($0.035 × 2 takes)");
});

test("lipsync is per second of the clip, in steps, with a floor, and shown before the clip is known", () => {
  const kling = rule("SonifyKlingLipsync");
  assert.equal(estimateFor(catalog.SonifyKlingLipsync, {}).text, "$0.014 per second of the clip, in steps of 5 s");
  assert.deepEqual(estimate(kling, {}, 2.5), { usd: 0.07, text: "$0.070 (5 s of clip)" });
  assert.equal(estimate(kling, {}, 5.0).usd, 0.07);
  assert.ok(Math.abs(estimate(kling, {}, 5.2).usd - 0.14) < 1e-12);
  assert.ok(Math.abs(estimate(rule("SonifySync3"), {}, 3).usd - 0.4) < 1e-12); // $8 a minute
  const latentsync = catalog.SonifyLatentSync;
  assert.equal(estimateFor(latentsync, { provider: "fal" }, 2.5).text, "$0.200 (3 s of clip)"); // at least $0.20
  assert.equal(estimateFor(latentsync, { provider: "wavespeed" }, 7).text, "$0.300 (10 s of clip)");
  const auto = estimateFor(latentsync, { provider: "auto" }, 7);
  assert.equal(auto.text, "fal $0.200 (7 s of clip) · WaveSpeed $0.300 (10 s of clip)");
  assert.equal(auto.usd, 0.2);
});
