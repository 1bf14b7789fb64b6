"""A model's price rule (sonify/catalog.py's Price) as the frontend's native price badge: a JSONata expression over
the node's widgets, as ComfyUI 0.33's frontend evaluates it (widgets.<name>: numbers as numbers, null when unset).

The badge says the provider's price in dollars, as a text: the frontend shows a "usd" answer in Comfy credits, a
currency the provider does not bill in. A node with a `provider` widget says the chosen provider's price (the first
of "X, then Y"), and on auto each provider's where they differ. Its words are the ones the pack's own badge
(web/price.js) draws on hosts without a native one, tested side by side (tests/js)."""

from __future__ import annotations

import json

from ..sonify.catalog import PROVIDER_CHOICES, PROVIDER_TITLES, ModelSpec, Offer, Price
from .declaration import PriceBadge

NOT_PUBLISHED = "price not published"


def usd(amount: float) -> str:
    """A price as the badge writes it: to a tenth of a cent, as the catalog's prices are."""
    return f"${amount:.3f}"


def clip_text(price: Price) -> str:
    """A price per second (or minute) of the clip sent, whose length no widget knows: the rate, its steps, its floor."""
    unit = {1: "s", 60: "min"}.get(price.unit, f"{price.unit:g} s")
    steps = f", {price.step:g} s steps" if price.step not in (1, price.unit) else ""
    least = f", at least {usd(price.minimum)}" if price.minimum else ""
    return f"{usd(price.usd)}/{unit} of clip{steps}{least}"


def _one_job(spec: ModelSpec, offer: Offer | None) -> tuple[str, list[str]]:
    """(JSONata text of one job's price on `spec`'s provider, the widgets it reads); `offer`: the offer `spec` is, whose
    parameters the node shows under its own names (None: the node's own spec)."""
    price = spec.price
    if price.usd is None:
        return json.dumps(NOT_PUBLISHED), []
    if price.per == "compute_second":
        # a rate that gives no estimate before the run (fal's compute seconds): the rate, without its explanation
        return json.dumps(price.text.split(" (")[0]), []
    if price.per == "clip":
        return json.dumps(clip_text(price)), []
    if price.per == "second":
        seconds = spec.param(price.seconds_param)
        name = offer.shown(seconds.name) if offer is not None else seconds.name
        per_second = json.dumps(f"{usd(price.usd)}/s of clip")
        # The job asks for `seconds` of sound; 0 (where the parameter allows it) asks for the clip's length, which
        # no widget knows: the rate then.
        job = f'"$" & $formatNumber({price.usd} * widgets.{name}, "0.000") & "/job"'
        return (f"(widgets.{name} = 0 ? {per_second} : {job})" if seconds.min == 0 else job), [name]
    return json.dumps(f"{usd(price.usd)}/job"), []


def badge(spec: ModelSpec, takes: bool) -> PriceBadge:
    """The badge of `spec`'s node; `takes`: the node has a `variations` widget (its takes, each a job, are said)."""
    times = (' & ($type(widgets.variations) = "number" and widgets.variations > 1 ? '
             '" × " & $string(widgets.variations) & " takes" : "")') if takes else ""
    text, widgets = _one_job(spec, None)
    each = [(spec, text, spec.price.usd is not None)]
    for offer in spec.offers:
        own, read = _one_job(offer.spec, offer)
        each.append((offer.spec, own, offer.spec.price.usd is not None))
        widgets += [w for w in read if w not in widgets]
    if len({t for _, t, _ in each}) == 1:  # one provider, or the same price on each: the provider changes nothing
        expr = text + times if each[0][2] else text
    else:
        auto = " & \" · \" & ".join(f'{json.dumps(PROVIDER_TITLES[s.provider] + " ")} & {t}' for s, t, _ in each)
        expr = f"({auto}){times if any(p for *_, p in each) else ''}"
        for s, t, published in reversed(each):  # the provider chosen, or the first of "X, then Y"
            named = " or ".join(f"widgets.provider = {json.dumps(c)}" for c in PROVIDER_CHOICES
                                if c.split(", then ")[0] == s.provider)
            expr = f"(({named}) ? ({t}){times if published else ''} : {expr})"
        widgets.append("provider")
    if takes and any(p for *_, p in each):
        widgets.append("variations")
    return PriceBadge(expr=f'{{"type": "text", "text": {expr}}}', widgets=tuple(widgets))

