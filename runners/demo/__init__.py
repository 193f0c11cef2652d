"""The offline demo: a tiny Llama model built locally (tokenizer trained on the bundled text), the
paths of the demo data sets and the demo hyper-parameters (tiny.py). Tests and `alignplan demo` use it.
"""
