"""Production telemetry: what inference servers report and how windows of it are judged.

``domain`` is pure (stdlib + numpy): window accumulators, baselines, window evaluation, input
signatures, rare-pattern summaries and the trigger library. ``client`` is the non-blocking producer
inference servers embed. The faust app that calls the domain per message lives elsewhere.
"""
