"""The pipeline as plain classes: intake stage -> repartition by profile -> decision stage.

No faust here: :mod:`streams.app` drives these stages from Kafka, and ``cxstream
simulate`` drives the very same classes from a file with in-memory stores, so both give
the same triggers, ids included.
"""
