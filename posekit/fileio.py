"""Reading user files into Python objects with errors that name the file."""
from __future__ import annotations

import json
import os
from typing import Any, Union

from .errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


def read_json(path: PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file raises DataError("<what> not found" ...)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a JSON file", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path) from None
    except OSError as err:
        raise DataError(f"cannot read file ({err.strerror})", path) from None
