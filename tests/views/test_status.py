"""`taskloom workers`: current step, mean step time, heartbeat age, stale workers marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskloom.views.status import format_workers


def rq_time(seconds_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_workers_table_shows_sequences_steps_mean_and_marks_stale() -> None:
    live = [
        {
            "name": "gpu0",
            "model": "gemma",
            "adapters": "lora.gguf",
            "gpu": "0",
            "queues": "slm",
            "state": "busy",
            "current_step": "r1/contact,r1/intent,r2/contact",
            "sequences": "3/16",
            "successful_job_count": "3",
            "failed_job_count": "1",
            "total_working_time": "2.0",
            "last_heartbeat": rq_time(1),
        },
        {
            "name": "gpu1",
            "model": "gemma",
            "gpu": "1",
            "queues": "slm",
            "state": "idle",
            "successful_job_count": "0",
            "last_heartbeat": rq_time(30),
        },
    ]
    lines = format_workers(live, lease_s=5.0).splitlines()
    assert lines[0].split() == [
        "WORKER",
        "MODEL",
        "ADAPTERS",
        "GPU",
        "DEVICE",
        "QUEUES",
        "STATE",
        "SEQS",
        "STEP",
        "JOBS",
        "MEAN",
        "HEARTBEAT",
    ]
    row = ["gpu0", "gemma", "lora.gguf", "0", "-", "slm", "busy", "3/16", "r1/contact", "+2", "4"]
    row.append("500ms")
    assert lines[1].split()[:12] == row
    assert "STALE" not in lines[1]
    assert lines[2].split()[7:11] == ["-", "-", "0", "-"] and lines[2].endswith("STALE")


def test_workers_table_shows_where_llama_cpp_put_the_model() -> None:
    live = [
        {"name": "a", "gpu": "0", "device": "CUDA0", "gpu_layers": "19/19", "vram_mb": "312.4"},
        {"name": "b", "gpu": "-", "device": "CPU", "gpu_layers": "0/19", "vram_mb": "0.0"},
    ]
    lines = format_workers(live, lease_s=5.0).splitlines()
    assert "CUDA0 19/19 312MiB" in lines[1]
    assert "CPU 0/19" in lines[2] and "MiB" not in lines[2]


def test_workers_help_explains_every_column_including_cpu_layers() -> None:
    from click.testing import CliRunner

    from taskloom.cli import cli
    from taskloom.views.status import WORKER_COLUMNS

    shown = CliRunner().invoke(cli, ["workers", "--help"])
    assert shown.exit_code == 0
    for name, meaning in WORKER_COLUMNS:
        assert f"{name}  " in shown.output and meaning.split()[0] in shown.output
    assert "`CPU 0/19` means 0 of the model's 19 layers are on a GPU" in shown.output
