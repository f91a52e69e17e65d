"""Let mmengine 0.10.7 resolve ``mmdet::`` config scopes without ``pkg_resources``.

mmengine 0.10.7 finds the package behind a scoped ``_base_`` (``'mmdet::rtmdet/...'``) with
``pkg_resources``, which setuptools >= 82 no longer ships, so every scoped config fails to load
with ``No module named 'pkg_resources'``. mmengine fixed this upstream (open-mmlab/mmengine#1676,
importlib instead of pkg_resources) after 0.10.7. Until the pinned stack moves to that release, the
config loader gets importlib-based equivalents, and only when ``pkg_resources`` is missing.
"""

from __future__ import annotations

import importlib.util
import os

from mmengine.config import config as _config


def _is_installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _installed_path(package: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"cannot locate the installed package {package!r}")
    return os.path.dirname(spec.origin)


if importlib.util.find_spec("pkg_resources") is None:
    _config.is_installed = _is_installed
    _config.get_installed_path = _installed_path
