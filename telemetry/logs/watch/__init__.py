"""``vigil logs watch``: a live log, window by window, with the anomalies of each window.

Stages, one module each: ``sources`` (a file followed through rotation and truncation, or
standard input) and ``kinesis`` (CloudWatch Logs subscription records from a Kinesis stream,
with per-shard leases and checkpoints) give lines; ``stream`` turns them into records as they
arrive; ``detector`` counts templates per window and flags new templates, spikes and error
bursts against the stream's own history; ``watcher`` closes a window every ``--window``
seconds and keeps the state; ``explain`` asks the explainer about anomalous windows;
``metrics`` exports ``vigil_log_*``; ``render`` and ``tui`` show the windows. The records are
``contracts.log_watch``.
"""
