"""Training data: loading a data set (local file or hub id), detecting its format and normalising it
to what a method's TRL trainer reads (load.py). The bundled demo data sets live in this folder too
(demo_*.jsonl, corpus.txt; regenerate with ``python runners/data/make_demo_data.py``).
"""
