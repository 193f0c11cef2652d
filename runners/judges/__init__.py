"""Judges for RLAIF and Constitutional AI: a model that compares two responses (asked in both
orders) or critiques one against a constitution, turning generated responses into preference
pairs or revisions. One module per judge; the pipelines call them.
"""
