"""The compose test's figures (build time, image size, up → ready, what each attack showed): printed at the
end of the run and written to reports/compose.json."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "reports" / "compose.json"

#: name → what was measured or seen, in the order the run found it.
FIGURES: dict[str, object] = {}


def save() -> None:
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(json.dumps(FIGURES, indent=2, ensure_ascii=False))
