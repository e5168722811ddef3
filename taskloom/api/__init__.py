"""The library's entry points, which the CLI calls too: it keeps no policy of its own.

- `local`: `run`, `resume`, `run_goal`, `plan_goal`, `validate` (the embedded default
  when no Redis is configured).
- `cluster`: `Cluster`, which stays up for many runs, and `run_many`; `run` is a
  Cluster used once. `targets`: what a run target names, and the tools it needs.
- `remote`: `submit`, `cancel`, `status`, `wait`, `live_workers`, `serve`.

Every call takes `settings=` (default: the environment's) and any `Settings` field as
a keyword option, as the CLI's flags do.
"""

from taskloom.workflows.record import RunRecord, RunStatus

__all__ = ["RunRecord", "RunStatus"]
