"""examples/ run as written (reduced forms)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CEM = ROOT / "examples" / "plan_cem.py"


@pytest.mark.skipif(not CEM.exists(), reason="examples/ not beside tests/")
def test_plan_cem_quick():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(CEM), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert (
        last.startswith("plan_cem: mean real return ")
        and " over 1 episodes, " in last
        and last.endswith(" ms per action")
    )
    assert float(last.split()[4]) >= 40  # 50 real steps at most; a working planner keeps the pole up


PENDULUM = ROOT / "examples" / "pendulum_mpc.py"


@pytest.mark.skipif(not PENDULUM.exists(), reason="examples/ not beside tests/")
def test_pendulum_mpc_quick():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(PENDULUM), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("pendulum_mpc: random ") and last.endswith("(mean real return over 2 episodes)")
    random_return = float(last.split()[2].rstrip(","))
    planned = float(last.split()[4])
    assert planned > random_return  # the learned ensemble plans better than chance on the real env


VIDEO = ROOT / "examples" / "video_world_model.py"


@pytest.mark.skipif(not VIDEO.exists(), reason="examples/ not beside tests/")
def test_video_world_model_quick():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(VIDEO), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("video_world_model: 2 iterations, mean return ") and last.endswith(" frames/s")


MOPO = ROOT / "examples" / "offline_mopo.py"


@pytest.mark.skipif(not MOPO.exists(), reason="examples/ not beside tests/")
def test_offline_mopo_quick():
    pytest.importorskip("stable_baselines3")
    proc = subprocess.run([sys.executable, str(MOPO), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("offline_mopo: behaviour ") and last.endswith("(mean real return over 2 episodes)")
    parts = last.replace(",", "").split()
    assert [parts[1], parts[3], parts[5]] == ["behaviour", "unpenalised", "penalised"]
    assert all(-2000 < float(parts[i]) <= 0 for i in (2, 4, 6))  # Pendulum returns
