"""The generated constant modules are current with vmkit/flags.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.native_only

ROOT = Path(__file__).resolve().parent.parent


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_constants", ROOT / "tools/gen_constants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_constant_modules_are_current() -> None:
    """Run `python tools/gen_constants.py` after changing vmkit/flags.py."""
    gen = _generator()
    for path, make in gen.TARGETS.items():
        assert path.read_text() == make(), f"{path} is stale: run python tools/gen_constants.py"
