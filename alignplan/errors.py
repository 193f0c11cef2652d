"""How a page shows what went wrong: input errors as their message (which names the field), anything
else as a short line with the details folded away, never a raw traceback.

    got = errors.attempt("Planning", plans_for, kwargs, methods)   # each call that can fail
    errors.run_page(main)                                          # around the page's main()
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")


@dataclass
class Outcome:
    """What attempt() returns: ok, and the value when ok."""

    ok: bool
    value: Any = None


def _page_wording() -> dict[str, str]:
    """Advice written for the shell, and what the page says instead."""
    from planner.models import CONFIG_FILE_HINT

    return {CONFIG_FILE_HINT: "download its config.json elsewhere and upload it on the Plan page "
                              "(\u201c\u2026or upload a model's config.json\u201d)"}


def page_words(text: str) -> str:
    """An error message with its command-line advice put in the page's words."""
    for shell, page in _page_wording().items():
        text = text.replace(shell, page)
    return text


def show_error(what: str, exc: BaseException) -> None:
    """Input errors (ValueError) show their message, which names the field, in the page's words;
    anything else shows a short line, with the details folded away: never a raw traceback."""
    if isinstance(exc, ValueError):
        st.error(page_words(f"{what}: {exc}"), icon=":material/error:")
        return
    st.error(f"{what} failed unexpectedly ({type(exc).__name__}). Details below; please report it.",
             icon=":material/bug_report:")
    with st.expander("Error details"):
        st.code("".join(traceback.format_exception_only(type(exc), exc)).strip() + "\n\n"
                + "".join(traceback.format_tb(exc.__traceback__)[-4:]), language="text")


def attempt(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Outcome:
    """Call fn; on failure show the error (show_error) and return Outcome(False)."""
    try:
        return Outcome(True, fn(*args, **kwargs))
    except Exception as exc:  # every failure becomes a message on the page
        show_error(what, exc)
        return Outcome(False)


def run_page(main: Callable[[], None], what: str = "This page") -> None:
    """Run a page's main(): anything it did not catch itself becomes a short error with details
    folded away, never a traceback. (st.rerun/st.stop/st.switch_page are BaseExceptions and pass.)"""
    try:
        main()
    except Exception as exc:  # the last line of defence; pages catch the errors they expect
        show_error(what, exc)
