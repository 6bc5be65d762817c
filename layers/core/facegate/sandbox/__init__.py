"""Independent testing: an operator-authorised tester's labelled set, evaluated apart from every gallery.

- :mod:`.archive`: the set as sent (a zip of ``labels.csv`` and images), checked and read strictly.
- :mod:`.keys`: where a tester's sets and reports live (its own ``independent-tests/`` prefix).
- :mod:`.job`: the Batch job (``python -m facegate.sandbox``) that evaluates a set through the
  production path and writes the same report ``facegate evaluate`` writes. It touches no table.

The authorisation and each set's decision are the service's (:mod:`facegate.service.sandbox`); the
IndependentTest workflow (``infra/statemachine/independent_test.asl.json``) runs them in order.
"""
