"""Training recipes: small pluggable units over the shared loop in :mod:`runner.train.loop`."""
