"""Pruning settings: which layers prune, how wide the keep band is, merge or drop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["merge", "drop"]
POLICIES = ("none", "all", "even", "odd")


def parse_layers(spec: str | list[int] | tuple[int, ...]) -> str | tuple[int, ...]:
    """Normalise a layer policy: a policy name, or a list like "0,2,5" / [0, 2, 5]."""
    if isinstance(spec, (list, tuple)):
        layers = tuple(sorted({int(i) for i in spec}))
        if any(i < 0 for i in layers):
            raise ValueError(f"pruning layer indices must be >= 0, got {spec!r}")
        return layers
    text = str(spec).strip().lower()
    if text in POLICIES:
        return text
    try:
        layers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        if not layers:  # "" or "," would otherwise silently mean no pruning
            raise ValueError(text)
    except ValueError:
        raise ValueError(
            f"pruning layers must be one of {', '.join(POLICIES)} or a comma-separated "
            f"list of 0-based layer indices, got {spec!r}"
        ) from None
    if any(i < 0 for i in layers):
        raise ValueError(f"pruning layer indices must be >= 0, got {spec!r}")
    return layers


@dataclass(frozen=True)
class PruningConfig:
    """ALPINE settings.

    alpha: half-width of the keep band in standard deviations around the mean score.
    layers: "none", "all", "even", "odd" or explicit 0-based layer indices.
    mode: "merge" averages the pruned tokens of a row into one token, "drop" removes them.
    """

    alpha: float = 1.0
    layers: str | tuple[int, ...] = "all"
    mode: Mode = "merge"
    # When true the last layer computes attention scores even if it does not prune,
    # so callers can explain a prediction by the tokens that mattered most there.
    track_scores: bool = False
    # When true every scoring layer records the importance each input position received
    # (AlpineOutput.token_scores), for line ranking. Never changes a result.
    track_lines: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", parse_layers(self.layers))
        if self.mode not in ("merge", "drop"):
            raise ValueError(f"pruning mode must be 'merge' or 'drop', got {self.mode!r}")
        if not self.alpha >= 0:
            raise ValueError(f"pruning alpha must be >= 0, got {self.alpha!r}")

    def prunes(self, layer: int, num_layers: int) -> bool:
        if layer >= num_layers:
            return False
        if self.layers == "none":
            return False
        if self.layers == "all":
            return True
        if self.layers == "even":
            return layer % 2 == 0
        if self.layers == "odd":
            return layer % 2 == 1
        return layer in self.layers  # type: ignore[operator]

    def pruning_layers(self, num_layers: int) -> list[int]:
        return [i for i in range(num_layers) if self.prunes(i, num_layers)]

    def to_dict(self) -> dict:
        layers = self.layers if isinstance(self.layers, str) else list(self.layers)
        return {"alpha": self.alpha, "layers": layers, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict) -> PruningConfig:
        return cls(
            alpha=float(data.get("alpha", 1.0)),
            layers=data.get("layers", "all"),
            mode=data.get("mode", "merge"),
        )


NO_PRUNING = PruningConfig(layers="none")
