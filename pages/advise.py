"""Advise: being built (issue 5)."""

import streamlit as st

st.title("Advise")
st.info("This page arrives with its back end.")
