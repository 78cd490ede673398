"""Starting, watching and stopping one ``nvr run`` for the real-footage check.

:func:`write_config` generates the configuration: an embedded nats-server on
a free port with a fresh store directory, the HTTP API on a free 127.0.0.1
port, embedded detection on the CPU with the sample model settings of
``config/config.yaml``, an embedded spatial node, and three external cameras
(no ``url``: nvr publishes no frames for them, the harness does): ``left``
and ``right`` on floor ``lobby`` (one shard, the one under test) and ``full``
on floor ``ref`` (its own shard, never mixed with the views).

:class:`Nvr` runs the binary with that configuration, logs to a file, waits
for the API and the detector workers, and stops it with SIGTERM. Every
failure raises :class:`NvrError` carrying the tail of nvr's log.
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from frames import LINKED, REFERENCE, calibration_points

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = REPO / "data" / "env"

MIN_CONFIDENCE = 0.4  # as the sample camera of config/config.yaml
FLOOR_LINKED = "lobby"
FLOOR_REF = "ref"


class NvrError(RuntimeError):
    """A failure of nvr or of the harness around it, with nvr's log tail."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path, store_dir, nats_port, api_port, max_frame_age_ms=2000, log_level="info", overrides=(),
                 white_points=None):
    """Writes the generated nvr configuration to ``path`` and returns it as a dict;
    ``white_points``: camera id -> [R, G, B] to set as its white point."""
    cams = []
    for cam in LINKED + (REFERENCE,):
        detection = {"min_confidence": MIN_CONFIDENCE}
        if white_points and cam in white_points:
            detection["white_point"] = [float(v) for v in white_points[cam]]
        cams.append(
            {
                "id": cam,
                "floor": FLOOR_REF if cam == REFERENCE else FLOOR_LINKED,
                "detection": detection,
                "calibration": {"points": calibration_points(cam)},
            }
        )
    cfg = {
        "log_level": log_level,
        "api": {"address": f"127.0.0.1:{api_port}"},
        "nats": {
            "embedded": True,
            "url": f"nats://127.0.0.1:{nats_port}",
            "store_dir": str(store_dir),
        },
        "detection": {
            "embedded": True,
            "backend": "cpu",
            "models_path": str(REPO / "data" / "models"),
            "model": "yolox_nano_dynamic",
            "model_type": "yolox",
            "input_size": 416,
            "min_confidence": 0.5,
            "max_frame_age_ms": int(max_frame_age_ms),
        },
        "spatial": {"embedded": True},
        "floors": [
            {"id": FLOOR_LINKED, "size_m": [12.0, 9.0]},
            {"id": FLOOR_REF, "size_m": [12.0, 9.0]},
        ],
        "cameras": cams,
    }
    for kv in overrides:
        key, _, value = kv.partition("=")
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def nvr_env():
    """The environment for nvr: ours plus ``data/env`` (ORT_DYLIB_PATH)."""
    env = dict(os.environ)
    if ENV_FILE.is_file():
        for line in ENV_FILE.read_text().splitlines():
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                env[k.strip()] = v.strip().strip('"').strip("'")
    env.pop("NATS_URL", None)
    env.pop("NVR_CONFIG", None)
    return env


def log_tail(path, n=60):
    """The last ``n`` lines of a log file ('' if absent)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def config_check(binary, config, log_path):
    """Runs ``nvr config check``; raises NvrError if nvr refuses the config."""
    p = subprocess.run(
        [str(binary), "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=nvr_env(),
        cwd=REPO,
        check=False,
    )
    Path(log_path).write_text(p.stdout + p.stderr)
    if p.returncode != 0 or "configuration OK" not in p.stdout + p.stderr:
        raise NvrError(f"nvr config check refused {config} (rc {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout


class Nvr:
    """One ``nvr run`` child process."""

    def __init__(self, binary, config, api_port, log_path):
        self.binary = Path(binary)
        self.config = Path(config)
        self.api = f"http://127.0.0.1:{api_port}"
        self.log_path = Path(log_path)
        self.proc = None
        self._log = None

    def fail(self, msg):
        """Raises NvrError with ``msg``, nvr's exit status and the log tail."""
        if self.proc is not None and self.proc.poll() is not None:
            msg += f" [nvr exit code {self.proc.returncode}]"
        raise NvrError(f"{msg}\n--- nvr log tail ({self.log_path}) ---\n{log_tail(self.log_path)}")

    def start(self, timeout_s=60.0):
        """Starts nvr and waits until the API answers and every detector worker is loaded."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=nvr_env(),
            cwd=REPO,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"nvr exited with code {self.proc.returncode} during start")
            try:
                st = self.get("/api/v1/plugins/nvr-detection/status")
                workers = st.get("workers") or []
                if workers and all(w.get("backend") for w in workers):
                    return st
                last = st
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.5)
        self.fail(f"nvr not ready within {timeout_s} s (last answer: {last!r})")

    def get(self, path, timeout=5.0):
        """GET ``path`` of the API as JSON."""
        with urllib.request.urlopen(self.api + path, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def alive(self):
        """Whether the child is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s=20.0):
        """SIGTERM, wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode
