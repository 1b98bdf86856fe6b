"""Everything that touches Optuna: spaces, samplers, pruners, the objective and the study runner.

Kept free of imports so that ``hpsearch.search.spec`` can use ``search.space`` without a cycle; the
public names are re-exported from ``hpsearch``.
"""
