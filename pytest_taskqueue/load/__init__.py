"""Load testing of a TaskQueue implementation (``taskqueue-harness load``, docs/load.md).

One module per job:

- ``workload``: the task mix, payloads, keys and duplicate submits (shared by both generators);
- ``generator``: the open-loop generator (fixed arrival schedule, several processes, grpc.aio);
- ``recording``: latencies in HDR histograms, whole run and per interval;
- ``tracking``: every acknowledged task's outcome, end-to-end latency, clock check, backlog;
- ``run``: one run (generate, track, check with ``fault_injection.history``, summarise);
- ``limits``: ``--slo`` objectives and the ``--find-max`` search;
- ``report`` and ``html``: the JSON report and its self-contained HTML page;
- ``locust_user``: a Locust user driving the same workload (``python -m pytest_taskqueue.load locustfile``);

The command line is ``pytest_taskqueue/cli/load.py`` (``taskqueue-harness load``).
"""
