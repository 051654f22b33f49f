"""Recommendation methods, one module each, registered by name with ``@register_method``.

Every module in this package is imported by the registry, so adding a method means adding a file here:
its class (a :class:`recrepro.method.Method`), its hyperparameters with the reference's defaults, and its
Optuna search space. Nothing else in the harness changes.
"""
