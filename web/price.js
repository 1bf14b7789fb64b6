// The price badge's arithmetic, from a rule the pack's route serves (GET /sonify/prices, written once in
// sonify/models.py). Pure: no DOM, no ComfyUI, so Node's test runner checks it against the served catalog.

const NOT_PUBLISHED = "not published";
const TITLES = { wavespeed: "WaveSpeed", fal: "fal" };

// How a dollar amount is shown: to a tenth of a cent, as the catalog's prices are.
export function usdText(usd) {
  return `$${usd.toFixed(3)}`;
}

// The seconds of audio a per-second rule bills: the widget's value, or (0 = "match the clip") the clip's
// length in whole seconds within the parameter's range, as the engine asks for it; null while the clip's
// length is not known.
export function billedSeconds(rule, values, clipSeconds) {
  const asked = Number(values[rule.param]);
  if (asked !== 0 || !rule.zero_is_clip) return asked;
  if (clipSeconds == null) return null;
  return Math.min(rule.max, Math.max(1, Math.ceil(clipSeconds - 1e-9)));
}

// How many jobs one queue makes: the `variations` widget where the node has one.
export function takes(values) {
  const n = Number(values.variations);
  return Number.isInteger(n) && n > 1 ? n : 1;
}

// {usd: number | null, text}: the estimate for the node's widget values (name -> value) and the clip's
// length in seconds (null if unknown).
export function estimate(rule, values, clipSeconds = null) {
  const n = takes(values);
  const times = n > 1 ? ` × ${n} takes` : "";
  if (rule.usd == null) {
    // a rate that gives no estimate before the run (fal's compute seconds): the rate, without its explanation
    return { usd: null, text: rule.text.startsWith(NOT_PUBLISHED) ? "price not published" : rule.text.split(" (")[0] };
  }
  if (rule.per === "job") {
    return { usd: rule.usd * n, text: `${usdText(rule.usd * n)}` + (n > 1 ? ` (${usdText(rule.usd)}${times})` : "") };
  }
  // per second (or minute) of the clip, in steps, at least a minimum: lipsync; the clip's length from the node
  if (rule.per === "clip") {
    if (clipSeconds == null) return { usd: null, text: `${rule.text}${times}` };
    const billed = Math.ceil(Math.round((clipSeconds / rule.step) * 1e6) / 1e6) * rule.step;
    const one = Math.max(rule.minimum, (rule.usd * billed) / rule.unit);
    return { usd: one * n, text: `${usdText(one * n)} (${billed} s of clip${times})` };
  }
  const seconds = billedSeconds(rule, values, clipSeconds);
  if (seconds == null) {
    return { usd: null, text: `${usdText(rule.usd)} per second of the clip${times}` };
  }
  const usd = rule.usd * seconds * n;
  return { usd, text: `${usdText(usd)} (${seconds} s × ${usdText(rule.usd)}${times})` };
}

// The estimate for a catalog entry (GET /sonify/prices): a node with a `provider` widget follows the provider chosen
// (the first of "X, then Y"); on auto it shows each provider's estimate, the cheaper known one as its `usd`.
export function estimateFor(entry, values, clipSeconds = null) {
  const rules = entry.providers;
  if (!rules) return estimate(entry.rule, values, clipSeconds);
  const first = String(values.provider ?? "auto").split(", then ")[0];
  if (rules[first]) return estimate(rules[first], values, clipSeconds);
  const each = Object.entries(rules).map(([provider, rule]) => [provider, estimate(rule, values, clipSeconds)]);
  if (new Set(each.map(([, e]) => e.text)).size === 1) return each[0][1];
  const known = each.filter(([, e]) => e.usd != null).map(([, e]) => e.usd);
  return {
    usd: known.length ? Math.min(...known) : null,
    text: each.map(([provider, e]) => `${TITLES[provider] ?? provider} ${e.text}`).join(" · "),
  };
}
