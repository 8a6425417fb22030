"""The documents of ``docs/`` as help topics: ``remoteops help TOPIC``.

The reference lives in the repository's ``docs/`` directory. A wheel carries
it inside the package as ``remoteops/_docs/`` (``pyproject.toml`` force-includes
it), so ``remoteops help`` works wherever remoteops is installed; a checkout
(an editable install) reads ``docs/`` beside the package.
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from remoteops.errors import RemoteOpsError, UsageError

__all__ = ["docs_dir", "read_topic", "resolve_topic", "topics"]

_INDEX = "README"


def docs_dir() -> Traversable:
    """Where the documents are: inside the installed package, else the checkout's docs/."""
    packaged = resources.files("remoteops") / "_docs"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "docs"
    if checkout.is_dir():
        return checkout
    raise RemoteOpsError(
        "the documentation is not installed with this copy of remoteops; "
        "see docs/ in its source repository"
    )


def topics() -> dict[str, str]:
    """Every topic (a document's name without ``.md``) and its title, sorted by name."""
    found: dict[str, str] = {}
    for entry in docs_dir().iterdir():
        name = entry.name
        if not name.endswith(".md") or name[:-3] == _INDEX:
            continue
        first = entry.read_text(encoding="utf-8").split("\n", 1)[0]
        found[name[:-3]] = first.lstrip("# ").strip()
    return dict(sorted(found.items()))


def resolve_topic(name: str) -> str:
    """The topic ``name`` names: itself, or the one topic it begins (``exit``: exit-codes)."""
    known = topics()
    wanted = name.strip().lower()
    if wanted in known:
        return wanted
    # `inventory` for inventories, `pattern` for patterns
    singular = {
        t: t[:-3] + "y" if t.endswith("ies") else re.sub(r"(?<=[^s])s$", "", t) for t in known
    }
    starting = [t for t in known if wanted and (t.startswith(wanted) or singular[t] == wanted)]
    if len(starting) == 1:
        return starting[0]
    if starting:
        raise UsageError(f"help topic {name!r} is ambiguous: {', '.join(starting)}")
    close = difflib.get_close_matches(wanted, list(known), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UsageError(f"no help topic {name!r}; {hint}`remoteops help` lists them")


def read_topic(name: str) -> str:
    """The text of topic ``name`` (see :func:`resolve_topic`)."""
    topic = resolve_topic(name)
    return (docs_dir() / f"{topic}.md").read_text(encoding="utf-8")
