"""Framework warnings that say nothing to a user of this package, silenced where the frameworks load.

Each filter matches one known message exactly, so any other warning still shows:

* mmengine 0.10.7 imports ``pkg_resources`` (its config scopes need it; setuptools is pinned below 82
  for that), and setuptools >= 81 warns that ``pkg_resources is deprecated as an API`` on every run;
* mmengine's ``autocast`` wrapper calls ``torch.cuda.amp.autocast(...)``, which torch >= 2.4 reports as
  deprecated (a FutureWarning) on CUDA machines; the behaviour is unchanged.
"""

from __future__ import annotations

import warnings

#: (category, message regex) of each known warning.
KNOWN = (
    (UserWarning, r"pkg_resources is deprecated as an API"),
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated"),
)


def silence_framework_warnings() -> None:
    """Install the filters of :data:`KNOWN` (idempotent: ``warnings`` drops duplicate filters)."""
    for category, message in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
