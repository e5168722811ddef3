"""A coordinator in its own process: run a plan file over Redis, print the record as JSON.

`taskloom run` caps plans at 64 steps (the planner's limit); the reliability tests need
500 and 1,000, so this drives the same library call with a higher cap. The last line
of stdout is `{"record": ..., "peak_rss_kb": ...}`.

    python tests/reliability/drive.py PLAN.json REDIS_URL RUN_ID [MAX_CONCURRENCY]
"""

from __future__ import annotations

import faulthandler
import json
import resource
import signal
import sys
from pathlib import Path

from taskloom.cli.app import configure_logging
from taskloom.config import Settings
from taskloom.dispatch.redis import RedisDispatcher
from taskloom.plan import load_plan
from taskloom.workflows import Workflow, run


def main(argv: list[str]) -> None:
    faulthandler.register(signal.SIGUSR1)  # a test that times out dumps our threads
    configure_logging(
        verbose=0, is_json=False
    )  # as the CLI: warnings on stderr; stdout is the record
    plan_path, url, run_id = argv[:3]
    concurrency = int(argv[3]) if len(argv) > 3 else 64
    settings = Settings.from_env().model_copy(
        update={"redis_url": url, "max_concurrency": concurrency}
    )
    plan = load_plan(json.loads(Path(plan_path).read_text()), max_steps=10_000)
    dispatcher = RedisDispatcher(settings=settings)
    try:
        record = run(
            Workflow.from_plan(plan), {}, dispatcher=dispatcher, settings=settings, run_id=run_id
        )
    finally:
        dispatcher.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"record": record.model_dump(mode="json"), "peak_rss_kb": peak_kb}))


if __name__ == "__main__":
    main(sys.argv[1:])
