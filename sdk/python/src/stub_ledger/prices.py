"""Model prices from the shared, dated price file `prices/llm.json` (per million tokens).

Lookup: the exact model name, then `aliases`, then the longest model key that is a prefix of
the name followed by '-' ("gpt-4o-2024-11-20" finds "gpt-4o"). Override at run time with
STUB_PRICES=<path> or by passing `prices=` (a path, a dict of the file's format, or a
PriceTable) to a wrapper; `price=` gives one model's price when the file has none.

Arithmetic is exact: a price of P per million tokens is P micro-units per token, so a cost is
sum(tokens * P) micro-units, rounded up to a whole micro-unit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from .errors import UnknownModel
from .money import micros_ceiling

PriceSource = Union[str, "os.PathLike[str]", Mapping[str, Any], "PriceTable"]


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices in currency units per million tokens."""

    model: str
    input: Decimal
    output: Decimal
    cached_input: Optional[Decimal]
    cache_write_5m: Optional[Decimal]
    cache_write_1h: Optional[Decimal]
    max_output_tokens: int
    context_window: Optional[int]

    @staticmethod
    def from_mapping(model: str, entry: Mapping[str, Any]) -> "ModelPrice":
        def decimal(name: str) -> Optional[Decimal]:
            value = entry.get(name)
            if value is None:
                return None
            if isinstance(value, float):
                raise ValueError(f"price {model}.{name} must be a decimal string, not a float")
            return Decimal(str(value))
        if "input" not in entry:
            raise ValueError(f"price for {model} has no 'input'")
        context = entry.get("context_window")
        return ModelPrice(
            model=model, input=Decimal(str(entry["input"])),
            output=decimal("output") or Decimal(0), cached_input=decimal("cached_input"),
            cache_write_5m=decimal("cache_write_5m"), cache_write_1h=decimal("cache_write_1h"),
            max_output_tokens=int(entry.get("max_output_tokens", 0)),
            context_window=int(context) if context is not None else None)

    def highest_input_rate(self) -> Decimal:
        """The dearest rate any input token can be billed at (a cache write may cost more)."""
        rates = [self.input] + [rate for rate in (self.cached_input, self.cache_write_5m,
                                                  self.cache_write_1h) if rate is not None]
        return max(rates)


def cost_micros(*terms: "tuple[int, Decimal]") -> int:
    """ceil(sum(tokens * price-per-million)) micro-units."""
    total = sum((Decimal(tokens) * price for tokens, price in terms), Decimal(0))
    return micros_ceiling(total)


class PriceTable:
    """A parsed price file."""

    def __init__(self, document: Mapping[str, Any], source: str = "<dict>") -> None:
        if document.get("schema") != 1:
            raise ValueError(f"{source}: unsupported price file schema {document.get('schema')!r}")
        self.source = source
        self.as_of = str(document.get("as_of", ""))
        self.currency = str(document.get("currency", "USD"))
        models = document.get("models") or {}
        self._models: Dict[str, ModelPrice] = {
            name: ModelPrice.from_mapping(name, entry) for name, entry in models.items()}
        self._aliases: Dict[str, str] = dict(document.get("aliases") or {})

    @staticmethod
    def load(path: Union[str, "os.PathLike[str]"]) -> "PriceTable":
        with open(path, encoding="utf-8") as file:
            return PriceTable(json.load(file), source=str(path))

    def find(self, model: str) -> Optional[ModelPrice]:
        if model in self._models:
            return self._models[model]
        alias = self._aliases.get(model)
        if alias is not None and alias in self._models:
            return self._models[alias]
        best: Optional[str] = None
        for name in self._models:
            if model.startswith(name + "-") and (best is None or len(name) > len(best)):
                best = name
        return self._models[best] if best is not None else None

    def lookup(self, model: str, override: Optional[Mapping[str, Any]] = None) -> ModelPrice:
        """The model's price; `override` (one model's entry) wins; else UnknownModel."""
        if override is not None:
            return ModelPrice.from_mapping(model, override)
        found = self.find(model)
        if found is None:
            raise UnknownModel(model)
        return found


def _bundled_path() -> Path:
    """The packaged copy (a wheel), else the repository's own prices/llm.json (a checkout)."""
    here = Path(__file__).resolve().parent
    packaged = here / "llm_prices.json"
    if packaged.exists():
        return packaged
    for parent in here.parents:
        candidate = parent / "prices" / "llm.json"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("prices/llm.json not found; set STUB_PRICES=<path>")


_default: Optional[PriceTable] = None


def default_prices() -> PriceTable:
    """STUB_PRICES if set, else the bundled file (read once)."""
    global _default
    configured = os.environ.get("STUB_PRICES")
    if configured:
        return PriceTable.load(configured)
    if _default is None:
        _default = PriceTable.load(_bundled_path())
    return _default


def resolve_prices(prices: Optional[PriceSource]) -> PriceTable:
    if prices is None:
        return default_prices()
    if isinstance(prices, PriceTable):
        return prices
    if isinstance(prices, Mapping):
        return PriceTable(prices)
    return PriceTable.load(prices)
