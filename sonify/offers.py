"""A model on both providers: its shown parameters as each provider takes them, and which providers a run tries, in
what order and why (the `provider` input: models.PROVIDER_CHOICES).

A model is shown by its home ModelSpec (its provider's names); each Offer is the same model on another provider, with
the names that differ. `translate` checks the shown values by the home's rules, renames them, and checks them again by
the target's (its ranges: fal's MMAudio seed stops at 65535), naming the shown input in any refusal. `plan` decides:

- a provider by name: only it (a parameter it cannot take is refused by name, before anything is sent);
- "X, then Y": X, and Y if X fails before any task exists there (failover.py);
- auto: the providers that have a key and can take the parameters as given, in the order SONIFY_PROVIDER_ORDER sets,
  else the cheaper for this clip first (a tie, or no estimate, keeps the catalog's order: the home first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalog import PROVIDER_CHOICES, PROVIDER_TITLES, ModelSpec, Offer, on_provider
from .errors import ConfigurationError, SonifyError, ValidationError
from .settings import PROVIDER_ORDER_ENV, Settings, client_settings


@dataclass(frozen=True)
class Attempt:
    """One provider a run tries: its spec, the parameters under its names (checked), and why it is there."""

    spec: ModelSpec
    params: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Passed:
    """A provider the run did not use, and why (no key, the other was cheaper, it failed before any task...)."""

    provider: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "why": self.why}


@dataclass
class ProviderChoice:
    asked: str  # the provider input as given
    attempts: list[Attempt]  # in order: the first runs; each next one only if the one before failed with no task
    passed: list[Passed] = field(default_factory=list)


def title(provider: str) -> str:
    return PROVIDER_TITLES.get(provider, provider)


def providers_of(spec: ModelSpec) -> list[ModelSpec]:
    """The model on each of its providers, the home first."""
    return [spec, *(offer.spec for offer in spec.offers)]


def translate(spec: ModelSpec, target: ModelSpec, params: dict[str, Any]) -> dict[str, Any]:
    """`params` (the shown names) as `target` (spec itself, or one of its offers' specs) takes them, checked by its
    rules. A shown parameter `target` lacks is left out at its default and refused by name otherwise."""
    if target is spec:
        return spec.validate(params)
    offer = next(o for o in spec.offers if o.spec is target)
    shown = spec.validate(params)
    own = {p.name for p in target.params}
    sent: dict[str, Any] = {}
    for p in spec.params:
        name = offer.name(p.name)
        if name in own:
            sent[name] = shown[p.name]
        elif shown[p.name] != p.check(p.default):
            raise ValidationError(p.name, f"{target.title} has no such input (only {title(spec.provider)}'s has): set "
                                          f"it back to its default or choose {spec.provider}")
    try:
        return target.validate(sent)
    except ValidationError as exc:
        raise _shown(exc, offer) from None


def _shown(exc: ValidationError, offer: Offer) -> ValidationError:
    """A refusal by the offer's rules, naming the input as the node shows it."""
    shown = offer.shown(exc.input_name)
    message = str(exc).removeprefix(f"{exc.input_name}: ")
    return ValidationError(shown, f"{message} (on {title(offer.spec.provider)})")


def check_choice(spec: ModelSpec, asked: Any) -> list[str]:
    """The providers `asked` names, in order (auto: every provider of the model), or ValidationError."""
    if asked not in PROVIDER_CHOICES:
        raise ValidationError("provider", f"must be one of {', '.join(PROVIDER_CHOICES)}, got {asked!r}")
    here = [s.provider for s in providers_of(spec)]
    if asked == "auto":
        return here
    named = [word.strip() for word in asked.split(", then ")]
    missing = [p for p in named if p not in here]
    if missing:
        raise ValidationError("provider", f"{spec.title} does not run on {missing[0]} (it runs on {', '.join(here)})")
    return named


def plan(spec: ModelSpec, asked: str, params: dict[str, Any], seconds: Callable[[], float], settings: Settings,
         keys: bool = True) -> ProviderChoice:
    """What a run of `spec` with `params` tries under `settings` (see the module docstring). `seconds()`: the clip's
    length, asked only when prices decide. `keys=False`: the keys are elsewhere (a Temporal batch's workers), so none
    is looked for here. Raises (before anything is sent) when no provider can run it: the first's reason."""
    named = check_choice(spec, asked)
    result = ProviderChoice(asked, [])
    usable: list[tuple[ModelSpec, dict[str, Any]]] = []
    first_error: SonifyError | None = None
    for provider in named:
        target = on_provider(spec, provider)
        try:
            checked = translate(spec, target, params)
            if len(named) > 1 and keys:
                _key_of(provider, settings)  # a provider to choose among must have a key
        except (ValidationError, ConfigurationError) as exc:
            if len(named) == 1:
                raise
            first_error = first_error or exc
            result.passed.append(Passed(provider, _why_not(exc)))
            continue
        usable.append((target, checked))
    if not usable:
        raise first_error  # every provider passed: the first one's reason
    ordered, why = _order(usable, asked, seconds, settings.provider_order) if asked == "auto" and len(usable) > 1 else (usable, _why_one(asked, named, usable))
    result.attempts = [Attempt(target, checked, why if i == 0 else "the next provider, used only if the ones before "
                                                                    "failed before any task existed")
                       for i, (target, checked) in enumerate(ordered)]
    return result


def _key_of(provider: str, settings: Settings) -> None:
    """ConfigurationError when `provider` has no usable key; a key file that cannot be read (its state folder
    unusable) counts as none — a run there would say so itself."""
    try:
        client_settings(provider, settings)
    except OSError as exc:
        raise ConfigurationError(f"no {provider} key could be read ({exc})") from None


def _why_not(exc: SonifyError) -> str:
    if isinstance(exc, ConfigurationError):
        return "no key"
    return str(exc)


def _why_one(asked: str, named: list[str], usable: list[tuple[ModelSpec, dict[str, Any]]]) -> str:
    if asked == "auto":
        return "the only provider with a key that takes these inputs" if len(named) > 1 else "its only provider"
    return "chosen" if len(named) == 1 or usable[0][0].provider == named[0] else "the first chosen could not run it"


def _order(usable: list[tuple[ModelSpec, dict[str, Any]]], asked: str, seconds: Callable[[], float],
           order: tuple[str, ...]) -> tuple[list[tuple[ModelSpec, dict[str, Any]]], str]:
    """auto among several: `order`'s (SONIFY_PROVIDER_ORDER), else the cheaper for this clip first (stable)."""
    if order:
        ranked = sorted(usable, key=lambda u: order.index(u[0].provider) if u[0].provider in order else len(order))
        return ranked, f"first in {PROVIDER_ORDER_ENV}"
    clip = seconds()
    costs = {target.provider: target.price(target.resolve(checked, clip), clip) for target, checked in usable}
    ranked = sorted(usable, key=lambda u: float("inf") if costs[u[0].provider] is None else costs[u[0].provider])
    first, second = ranked[0][0].provider, ranked[1][0].provider
    a, b = costs[first], costs[second]
    if a is None:
        return ranked, "no price estimate to compare; the catalog's order"
    if b is None:
        return ranked, f"its price is known for this clip (${a:.3f}), {title(second)}'s is not"
    if a < b:
        return ranked, f"cheaper for this clip (${a:.3f} against ${b:.3f} on {title(second)})"
    return ranked, f"as cheap as {title(second)} for this clip (${a:.3f}); the catalog's order"
