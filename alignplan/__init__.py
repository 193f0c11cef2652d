"""alignplan: plan memory, choose the alignment method, launch the run."""

__version__ = "0.1.0"
