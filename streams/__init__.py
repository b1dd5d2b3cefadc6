"""cxstream: raw channel events -> one profile per person -> consent -> rules -> triggers."""

from streams.native import check as _check_native

# A module compiled by `make native` whose source changed since: stop here with one line,
# rather than run its old compiled form (streams.native).
_check_native()
