"""Case files shipped with the package: the demo and the verification sphere.

``examples/`` in the repository links to these files, so there is one copy of each.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def case_path(name: str) -> Path:
    """Path of the shipped case file ``name`` (without ``.yaml``).

    Args:
        name: ``demo`` or ``sphere_electrochem``.

    Returns:
        The file's path inside the installed package.
    """
    path = Path(str(resources.files(__name__) / f"{name}.yaml"))
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped case {name!r}; shipped: {', '.join(known)}")
    return path
