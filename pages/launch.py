"""Launch: being built (issue 5)."""

import streamlit as st

from alignplan import ui

ui.use_app_navigation()

st.title("Launch")
st.info("This page arrives with its back end.")
