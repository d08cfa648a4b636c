"""The main job, shrunk: wmenv demo end to end on tiny settings."""

import subprocess
import sys

import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("matplotlib")

from wmenv import demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    plot = tmp_path / "curves.png"
    args = demo.parser().parse_args(
        [
            "--rounds",
            "2",
            "--steps",
            "2048",
            "--real-steps",
            "1500",
            "--model-epochs",
            "2",
            "--episodes",
            "3",
            "--envs",
            "8",
            "--plot",
            str(plot),
        ]
    )
    result = demo.run(args)
    out = capsys.readouterr().out
    assert "PPO trained in imagination only" in out and "random" in out
    assert "native backend" in out or "python backend" in out
    assert len(result["policy"]) == 3 and len(result["random"]) == 3
    assert result["real_steps"] == 1500 + 750
    assert len(result["curves"]["real_return"]) == 2
    assert plot.exists() and plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_model_learns_cartpole_dynamics():
    import torch

    data = demo.Transitions()
    demo.collect(data, 3000, seed=1)
    model = demo.build_model(torch)
    errors = demo.train_model(torch, model, data, epochs=15, seed=1)
    assert errors["state_rmse"] < 0.1 * errors["delta_rms"], errors


def test_console_entry_points():
    for argv in ([sys.executable, "-m", "wmenv", "--help"], [sys.executable, "-m", "wmenv"]):
        proc = subprocess.run(argv, capture_output=True, text=True)  # bare wmenv prints the help, runs nothing
        assert proc.returncode == 0 and all(c in proc.stdout for c in ("demo", "quickstart", "check"))
    proc = subprocess.run([sys.executable, "-m", "wmenv", "demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--rounds" in proc.stdout and "--plot" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "wmenv", "quickstart", "--steps", "200"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "imagined steps" in proc.stdout
