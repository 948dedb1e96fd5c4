"""harness-example-bandits: a third-party harness plugin, written only against the public ``harness`` API.

The hook module is :mod:`harness_example_bandits.plugin` (the ``harness`` entry point), the same place as in
every first-party plugin; the code its specs name is :mod:`harness_example_bandits.bandits`.
"""
