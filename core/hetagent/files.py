"""Reading the user's JSON and TOML files with errors that name the file and what it should have been."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from hetagent.errors import HetagentError


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; `what` names it in errors ("plan", "model config")."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise HetagentError(f"{path}: no such {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HetagentError(f"{path}: the {what} file is not valid JSON: {exc}") from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; `what` names it in errors ("price book", "study")."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise HetagentError(f"{path}: no such {what} file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HetagentError(f"{path}: the {what} file is not valid TOML: {exc}") from None
