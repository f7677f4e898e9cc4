"""``threadline``: the developer CLI for a local (or deployed) threadline stack.

A dev tool, installed with the dev extra (``make dev``): it is not part of the Lambda
layer. Commands live in :mod:`threadline_cli.main`; signed provider requests per
channel in :mod:`threadline_cli.channels`.
"""
