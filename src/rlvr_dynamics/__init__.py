"""rlvr-dynamics: reproductions of papers on the optimization dynamics of RLVR."""

__version__ = "0.1.0"
