// The price on a model node where ComfyUI's frontend draws no price badge of its own (ComfyUI 0.8: its frontend
// reads no price_badge), from the rule the pack's route serves (GET /sonify/prices, written once in
// sonify/models.py). Its words are the native badge's (nodes/price_badge.py: the same rule as JSONata on ComfyUI
// 0.33), tested side by side in tests/js. Pure: no DOM, no ComfyUI.

export const NOT_PUBLISHED = "price not published";

// How a dollar amount is shown: to a tenth of a cent, as the catalog's prices are.
export function usdText(usd) {
  return `$${usd.toFixed(3)}`;
}

// How many jobs one queue makes: the `variations` widget where the node has one.
export function takes(values) {
  const n = Number(values.variations);
  return Number.isInteger(n) && n > 1 ? n : 1;
}

// The badge's text for the node's widget values (name -> value): the price of one job (per second of the clip
// where the seconds widget is 0: "match the clip", whose length no widget knows), times the takes.
export function priceText(rule, values) {
  const n = takes(values);
  const times = n > 1 ? ` × ${n} takes` : "";
  if (rule.usd == null || rule.per === "compute_second") {
    // a rate that gives no estimate before the run (fal's compute seconds): the rate, without its explanation
    return rule.text.startsWith("$") ? rule.text.split(" (")[0] + times : NOT_PUBLISHED;
  }
  if (rule.per === "job") return `${usdText(rule.usd)}/job${times}`;
  const seconds = Number(values[rule.param]);
  if (seconds === 0 && rule.zero_is_clip) return `${usdText(rule.usd)}/s of clip${times}`;
  return `${usdText(rule.usd * seconds)}/job${times}`;
}
