"""How the app shows numbers: bytes in GiB (2^30), durations."""

from __future__ import annotations

GIB = 2**30


def gib(n: int | float | None) -> str:
    """Bytes as GiB (2^30) for display: two decimals below 10 GiB, one above."""
    if n is None:
        return "–"
    value = n / GIB
    return f"{value:,.2f} GiB" if abs(value) < 10 else f"{value:,.1f} GiB"


def gib1(n: int | float) -> str:
    """Bytes as GiB with one decimal: a GPU's memory as the fit verdict uses it. Rounded as gib() rounds
    a plan's peak (above 10 GiB), so a plan that fits never shows a larger figure than its GPU's."""
    return f"{n / GIB:,.1f} GiB"


def gpu_label(gpu_id: str, usable_bytes: int) -> str:
    """A GPU with the memory its fit verdict compares against (usable, not the marketing size):
    "H100-80GB (79.6 GiB)". The sidebar, the chart and the Fits-on table all show this."""
    return f"{gpu_id} ({gib1(usable_bytes)})"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
