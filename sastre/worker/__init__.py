"""The outbox workers: they send what the outbox holds (`dialog.outbox`).

* `backoff`: when a failed send is tried again, or given up (pure);
* `rates`: messages per second per channel, across workers and processes;
* `loop`: the worker itself (claim with a lease, send, record, sleep until woken);
* `flight`: the rows a running worker holds, claimed and not yet settled (its calls out);
* `process`: a worker as a process of its own (`sastre worker`, or beside `sastre serve`);
* `supervisor`: the one `sastre serve` and `sastre demo` run, started again if it dies;
* `outage`: Redis going away and coming back, said once each way (the workers carry on).
"""

from sastre.worker.backoff import RetryPolicy, Verdict, next_attempt
from sastre.worker.loop import FailureHook, Worker, outbound
from sastre.worker.rates import ChannelRates, storage_for

__all__ = [
    "ChannelRates",
    "FailureHook",
    "RetryPolicy",
    "Verdict",
    "Worker",
    "next_attempt",
    "outbound",
    "storage_for",
]
