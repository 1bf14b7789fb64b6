// The price on a model node where ComfyUI's frontend draws no price badge of its own (ComfyUI 0.8: its frontend
// reads no price_badge), from the rule the pack's route serves (GET /sonify/prices, written once in
// sonify/catalog.py). Its words are the native badge's (nodes/price_badge.py: the same rule as JSONata on ComfyUI
// 0.33), tested side by side in tests/js. Pure: no DOM, no ComfyUI.

export const NOT_PUBLISHED = "price not published";
const TITLES = { wavespeed: "WaveSpeed", fal: "fal" };

// How a dollar amount is shown: to a tenth of a cent, as the catalog's prices are.
export function usdText(usd) {
  return `$${usd.toFixed(3)}`;
}

// How many jobs one queue makes: the `variations` widget where the node has one.
export function takes(values) {
  const n = Number(values.variations);
  return Number.isInteger(n) && n > 1 ? n : 1;
}

// A price per second (or minute) of the clip sent, whose length no widget knows: the rate, its steps, its floor.
export function clipText(rule) {
  const unit = { 1: "s", 60: "min" }[rule.unit] ?? `${rule.unit} s`;
  const steps = rule.step !== 1 && rule.step !== rule.unit ? `, ${rule.step} s steps` : "";
  const least = rule.minimum ? `, at least ${usdText(rule.minimum)}` : "";
  return `${usdText(rule.usd)}/${unit} of clip${steps}${least}`;
}

// One job's price on one provider for the node's widget values (name -> value): per second of the clip where the
// seconds widget is 0 ("match the clip", whose length no widget knows).
export function jobText(rule, values) {
  if (rule.usd == null || rule.per === "compute_second") {
    // a rate that gives no estimate before the run (fal's compute seconds): the rate, without its explanation
    return rule.text.startsWith("$") ? rule.text.split(" (")[0] : NOT_PUBLISHED;
  }
  if (rule.per === "job") return `${usdText(rule.usd)}/job`;
  if (rule.per === "clip") return clipText(rule);
  const seconds = Number(values[rule.param]);
  if (seconds === 0 && rule.zero_is_clip) return `${usdText(rule.usd)}/s of clip`;
  return `${usdText(rule.usd * seconds)}/job`;
}

// The badge's text for a catalog entry (GET /sonify/prices) and the node's widget values: a node with a `provider`
// widget follows the provider chosen (the first of "X, then Y"), and on auto says each provider's price where they
// differ; then the takes.
export function priceText(entry, values) {
  const rules = entry.providers;
  let text;
  if (!rules) {
    text = jobText(entry.rule, values);
  } else {
    const first = String(values.provider ?? "auto").split(", then ")[0];
    if (rules[first]) {
      text = jobText(rules[first], values);
    } else {
      const each = Object.entries(rules).map(([provider, rule]) => [provider, jobText(rule, values)]);
      text = new Set(each.map(([, t]) => t)).size === 1 ? each[0][1]
        : each.map(([provider, t]) => `${TITLES[provider] ?? provider} ${t}`).join(" · ");
    }
  }
  const n = takes(values);
  return n > 1 && text !== NOT_PUBLISHED ? `${text} × ${n} takes` : text;
}
