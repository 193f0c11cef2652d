"""alignplan's Streamlit app: Plan, Advise, Launch, Runs.

Run it with `streamlit run app.py` (the server binds to 127.0.0.1, see .streamlit/config.toml).
This file holds the navigation and the sidebar choices every page shares: the model, the GPU type
and the GPU count. Pages live in pages/; computations live in planner, advisor and runners.
"""

from __future__ import annotations

import streamlit as st

from alignplan import sidebar

st.set_page_config(page_title="alignplan", page_icon=":material/memory:", layout="wide")

# Streamlit serves the default page at "/" only: its url_path is never matched, so a shared link to
# /plan?... would say "Page not found" (then run the default page). Plan is therefore an ordinary page
# at /plan, listed first (st.switch_page("pages/plan.py") finds the first page of a file), and the
# root runs the same file as a hidden default page.
PAGES = [
    st.Page("pages/plan.py", title="Plan", icon=":material/stacked_bar_chart:", url_path="plan"),
    st.Page("pages/advise.py", title="Advise", icon=":material/alt_route:", url_path="advise"),
    st.Page("pages/data.py", title="Data", icon=":material/stethoscope:", url_path="data"),
    st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:", url_path="launch"),
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs"),
    st.Page("pages/try.py", title="Try it", icon=":material/chat:", url_path="try"),
    st.Page("pages/plan.py", title="Plan", icon=":material/stacked_bar_chart:", url_path="home", default=True,
            visibility="hidden"),
]
page = st.navigation(PAGES)

sidebar.seed_shared_choices(st.query_params)

with st.sidebar:
    st.markdown("### Hardware and model")
    sidebar.sidebar_choices()
    st.caption("These choices are shared by every page. Memory in GiB (2^30 bytes).")

page.run()
