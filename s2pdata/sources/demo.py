"""The built-in demo source: procedurally drawn cel-shaded pictures, no download needed."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Item


@dataclass(frozen=True)
class DemoSource:
    """``n`` pictures from ``s2pdata.demo``, deterministic per ``seed``."""

    n: int = 64
    seed: int = 0

    def spec(self) -> dict:
        return {"kind": "demo", "n": self.n, "seed": self.seed}

    def items(self) -> list[Item]:
        from ..demo import demo_key

        return [Item(demo_key(i), i, {"source": "demo", "id": i}) for i in range(self.n)]

    def read(self, item: Item) -> bytes:
        from ..demo import demo_bytes

        return demo_bytes(int(item.locator), seed=self.seed)[0]

    def check_pixels(self, color) -> str | None:
        return None

    def summary(self) -> str:
        return f"source   demo: {self.n} drawn pictures (seed {self.seed})\nlisted   {self.n} items"
