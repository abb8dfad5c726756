"""The rooms of docs/architecture.md hold: no import crosses its table, and the pure modules do no I/O.

The table is read from the page itself, so the page and the code cannot drift apart: a new import between
rooms needs a new cell in the table, which a reader then sees.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
CODE_ROOTS = ("shared", "services", "deploy")
#: Libraries that talk to something outside the process, or log: none of them in a pure module.
IO_LIBRARIES = {
    "redis", "sqlalchemy", "sqlmodel", "psycopg", "alembic", "dramatiq", "fastapi", "starlette", "httpx",
    "websockets", "uvicorn", "loguru", "asyncio", "socket", "subprocess", "os", "prometheus_client",
}  # fmt: skip


def _rows() -> list[tuple[str, str]]:
    """(room, may-import cell) for each row of the page's table whose first cell names a room."""
    rows = []
    for line in PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[a-z_/<>]+/`", cells[0]):
            rows.append((cells[0].strip("`"), cells[2]))
    return rows


def room_of(path: str) -> str:
    """The table's room for a module path such as `shared/store/leases.py` or `services/db_sync/__main__.py`."""
    parts = path.split("/")
    if parts[0] == "shared":
        return f"shared/{parts[1]}/" if len(parts) > 2 else "shared/"
    if parts[0] == "services":
        return f"services/{parts[1]}/" if parts[1] in ("api", "cli") else "services/<worker>/"
    return "deploy/"


def allowed_rooms() -> dict[str, set[str]]:
    """What each room may import from the project, spelled out: 'every room under it' becomes the list."""
    rows = _rows()
    shared_rooms = {room for room, _ in rows if room.startswith("shared/")}
    allowed = {}
    for room, cell in rows:
        named = set(re.findall(r"`([a-z_/<>]+/)`", cell))
        if "every room under it" in cell:
            named |= shared_rooms
        allowed[room] = named | {room}
    return allowed


def _module_path(module: str) -> str | None:
    """`shared.store.leases` → `shared/store/leases.py` (or the package's `__init__.py`); None outside the project."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return str(candidate.relative_to(ROOT))
    return None


def _imports(path: Path) -> list[str]:
    """Every absolute import of a file, inside functions too (a lazy import crosses a room all the same)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    return found


def _project_files() -> list[Path]:
    return sorted(
        path
        for root in CODE_ROOTS
        for path in (ROOT / root).rglob("*.py")
        if "migrations/versions" not in path.as_posix()
    )


def test_the_table_names_every_room_the_code_has() -> None:
    rooms = {room_of(str(path.relative_to(ROOT))) for path in _project_files()}
    assert rooms <= set(allowed_rooms()), f"rooms missing from docs/architecture.md: {rooms - set(allowed_rooms())}"


def test_no_import_crosses_the_table() -> None:
    allowed = allowed_rooms()
    crossings = []
    for path in _project_files():
        source = str(path.relative_to(ROOT))
        for module in _imports(path):
            if module.split(".")[0] not in CODE_ROOTS:
                continue
            target = _module_path(module)
            if target is None or room_of(target) in allowed[room_of(source)]:
                continue
            crossings.append(f"{source} imports {module} ({room_of(source)} → {room_of(target)})")
    assert not sorted(set(crossings)), "imports the table of docs/architecture.md does not allow:\n" + "\n".join(
        sorted(set(crossings))
    )


def pure_modules() -> list[str]:
    """The modules the page's 'Pure modules' paragraph names (a folder stands for every module in it)."""
    text = PAGE.read_text()
    paragraph = text[text.index("Pure modules") :].split("\n\n")[0]
    named = re.findall(r"`(shared/[a-z_/]+(?:\.py)?)`", paragraph)
    modules = []
    for name in named:
        target = ROOT / name
        modules += [str(p.relative_to(ROOT)) for p in target.rglob("*.py")] if target.is_dir() else [name]
    return sorted(modules)


@pytest.mark.parametrize("module", pure_modules())
def test_a_pure_module_does_no_io(module: str) -> None:
    libraries = {name.split(".")[0] for name in _imports(ROOT / module)}
    assert not libraries & IO_LIBRARIES, f"{module} is listed as pure but imports {sorted(libraries & IO_LIBRARIES)}"
    project = {_module_path(name) for name in _imports(ROOT / module) if name.split(".")[0] in CODE_ROOTS}
    pure = pure_modules()
    impure = sorted(path for path in project - {None} if path not in pure and not path.endswith("__init__.py"))
    assert not impure, f"{module} is listed as pure but imports modules that are not: {impure}"


def test_a_crossing_would_be_caught() -> None:
    # The checks above pass on the code as it is; this shows they can fail.
    assert "shared/store/" not in allowed_rooms()["shared/domain/"]
    assert room_of("services/db_sync/__main__.py") == "services/<worker>/"
    assert "services/api/" not in allowed_rooms()["services/<worker>/"]
    assert "shared/domain/limits.py" in pure_modules()
