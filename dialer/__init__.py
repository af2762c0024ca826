"""dialer: a push-model speed-to-lead dialer daemon.

A lead arrives over HTTP, is stored durably in PostgreSQL, routed to reps by explicit rules,
the reps are rung over SIP and the first to answer is bridged to the prospect.
"""

__version__ = "0.1.0"
