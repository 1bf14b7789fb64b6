"""A model's price rule (sonify/models.py's Price) as the frontend's native price badge: a JSONata expression over
the node's widgets, as ComfyUI 0.33's frontend evaluates it (widgets.<name>: numbers as numbers, null when unset).

The badge says the provider's price in dollars, as a text: the frontend shows a "usd" answer in Comfy credits, a
currency the provider does not bill in. Its words are the ones the pack's own badge (web/price.js) draws on hosts
without a native one, tested side by side (tests/js)."""

from __future__ import annotations

import json

from ..sonify.catalog import ModelSpec, Price
from .declaration import PriceBadge

NOT_PUBLISHED = "price not published"


def usd(amount: float) -> str:
    """A price as the badge writes it: to a tenth of a cent, as the catalog's prices are."""
    return f"${amount:.3f}"


def badge(spec: ModelSpec, takes: bool) -> PriceBadge:
    """The badge of `spec`'s node; `takes`: the node has a `variations` widget (its takes, each a job, are said)."""
    price: Price = spec.price
    widgets: list[str] = []
    if price.usd is None:
        text = json.dumps(NOT_PUBLISHED)
    elif price.per == "compute_second":
        # a rate that gives no estimate before the run (fal's compute seconds): the rate, without its explanation
        text = json.dumps(price.text.split(" (")[0])
    elif price.per == "second":
        seconds = spec.param(price.seconds_param)
        widgets.append(seconds.name)
        per_second = json.dumps(f"{usd(price.usd)}/s of clip")
        # The job asks for `seconds` of sound; 0 (where the parameter allows it) asks for the clip's length, which
        # no widget knows: the rate then.
        job = f'"$" & $formatNumber({price.usd} * widgets.{seconds.name}, "0.000") & "/job"'
        text = f"(widgets.{seconds.name} = 0 ? {per_second} : {job})" if seconds.min == 0 else job
    else:
        text = json.dumps(f"{usd(price.usd)}/job")
    if takes and NOT_PUBLISHED not in text:
        widgets.append("variations")
        text = (f'{text} & ($type(widgets.variations) = "number" and widgets.variations > 1 ? '
                f'" × " & $string(widgets.variations) & " takes" : "")')
    return PriceBadge(expr=f'{{"type": "text", "text": {text}}}', widgets=tuple(widgets))
