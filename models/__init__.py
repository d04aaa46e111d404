"""The sdeppl gallery: one generative model per file, in plain NumPyro syntax.

Each module defines ``model(**data, ...)``, a ``data()`` loader returning the model's
keyword arguments (real data come from packages that ship them; simulated data come with
``TRUE_PARAMS``), and a one-line ``DESCRIPTION``. Models are worked examples and test
fixtures; inference settings live in the recipes of ``inference/``.
"""
