"""Load for ``bench/predict.py``: wrk with a Lua script, or Python threads, and the results.

wrk posts the body on keep-alive connections, counts every non-200 answer and prints the
latency percentiles as one ``BENCHJSON`` line; without wrk, closed-loop Python clients stand in.
``Load.run`` also measures the workers' CPU per request and how busy the rest of the machine was.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._servers import BODY, CLK_TCK, HOST, Server


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or iowait) since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


@dataclass
class Result:
    concurrency: int
    server: str
    client: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non200: int = 0
    socket_errors: int = 0
    error_detail: str = ""
    mean_ms: float = 0.0
    max_ms: float = 0.0
    cpu_us_per_req: float | None = None
    client_cpu_pct: float | None = None
    load: str = ""
    others_pct: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


WRK_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  non200 = 0
  last_bad = 0
end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    last_bad = status
  end
end
function done(summary, latency, requests)
  local bad, last = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    if t:get("last_bad") ~= 0 then last = t:get("last_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p99_us": %%.1f, ' ..
    '"mean_us": %%.1f, "max_us": %%.1f, "non200": %%d, "last_bad_status": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, bad, last,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_lua(path: Path, headers: dict[str, str]) -> Path:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(WRK_LUA % {"body": BODY, "headers": lines})
    return path


def run_wrk(
    wrk: str, port: int, lua: Path, concurrency: int, seconds: float
) -> tuple[dict[str, Any], str, list[str]]:
    threads = min(2, concurrency)  # wrk needs at least one connection per thread
    cmd = [
        wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency", "-s", str(lua), f"http://{HOST}:{port}/predict",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL
    )
    match = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    return json.loads(match.group(1)), proc.stdout, cmd


def run_python_client(
    port: int, headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Closed-loop keep-alive clients in threads; the GIL makes this the weaker load source."""
    all_headers = {"Content-Type": "application/json", **headers}
    payload = BODY.encode()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    non200 = [0] * concurrency
    errors = [0] * concurrency
    last_bad = [0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        start_gate.wait()
        lat = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline[0]:
                break
            try:
                conn.request("POST", "/predict", body=payload, headers=all_headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
                continue
            lat.append(time.perf_counter() - t0)
            if resp.status != 200:
                non200[i] += 1
                last_bad[i] = resp.status
        conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.wait()
    for w in workers:
        w.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - began
    flat = sorted(x for lat in latencies for x in lat)

    def pct(q: float) -> float:
        return flat[min(len(flat) - 1, int(q / 100 * len(flat)))] * 1e6 if flat else 0.0

    return {
        "requests": len(flat),
        "duration_us": elapsed * 1e6,
        "mean_us": statistics.fmean(flat) * 1e6 if flat else 0.0,
        "max_us": flat[-1] * 1e6 if flat else 0.0,
        "p50_us": pct(50),
        "p99_us": pct(99),
        "non200": sum(non200),
        "last_bad_status": max(last_bad),
        "connect": 0,
        "read": sum(errors),
        "write": 0,
        "status": 0,
        "timeout": 0,
    }


def pick_client(choice: str) -> tuple[str, str | None]:
    """Return the load generator for ``--client`` (auto: wrk when installed) and wrk's path."""
    wrk = shutil.which("wrk")
    client = ("wrk" if wrk else "python") if choice == "auto" else choice
    if client == "wrk" and not wrk:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    return client, wrk


class Load:
    def __init__(self, client: str, wrk: str | None, work: Path):
        self.client = client
        self.wrk = wrk
        self.work = work
        self.commands: list[str] = []

    def run(
        self,
        server: Server,
        name: str,
        headers: dict[str, str],
        concurrency: int,
        seconds: float,
        record: bool = True,
    ) -> Result:
        cpu0 = server.cpu()
        busy0 = busy_cpu_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if self.client == "wrk":
            assert self.wrk is not None
            lua = write_lua(
                self.work / f"post-{name}.lua", {"Content-Type": "application/json", **headers}
            )
            raw, _out, cmd = run_wrk(self.wrk, server.port, lua, concurrency, seconds)
            if record:
                self.commands.append(" ".join(cmd))
        else:
            raw = run_python_client(server.port, headers, concurrency, seconds)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1 = busy_cpu_seconds()
        cpu1 = server.cpu()
        requests = int(raw["requests"])
        worker_cpu = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1)
        client_cpu = None
        client_used = 0.0
        if self.client == "wrk":
            client_used = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            client_cpu = 100.0 * client_used / wall if wall > 0 else None
        # Everything else the machine did meanwhile (other jobs, the kernel's network work, the
        # gunicorn master, this harness): high values mean the figures are noisy.
        others = busy1 - busy0 - worker_cpu - client_used
        socket_errors = sum(int(raw[k]) for k in ("connect", "read", "write", "timeout"))
        detail = ""
        if raw["non200"] or socket_errors or raw["status"]:
            detail = (
                f"non-200 responses: {raw['non200']} (last status {raw['last_bad_status']});"
                f" wrk status errors (>=400): {raw['status']}; socket errors: connect"
                f" {raw['connect']}, read {raw['read']}, write {raw['write']},"
                f" timeout {raw['timeout']}"
            )
        return Result(
            concurrency=concurrency,
            server=name,
            client=self.client,
            requests=requests,
            seconds=float(raw["duration_us"]) / 1e6,
            p50_ms=float(raw["p50_us"]) / 1000,
            p99_ms=float(raw["p99_us"]) / 1000,
            mean_ms=float(raw.get("mean_us", 0.0)) / 1000,
            max_ms=float(raw.get("max_us", 0.0)) / 1000,
            non200=int(raw["non200"]),
            socket_errors=socket_errors,
            error_detail=detail,
            cpu_us_per_req=(worker_cpu / requests * 1e6) if requests and cpu1 else None,
            client_cpu_pct=client_cpu,
            load=loadavg(),
            others_pct=100.0 * others / wall if wall > 0 else 0.0,
        )


def fmt_table(results: list[Result]) -> str:
    header = (
        f"{'concurrency':<12}{'server':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'ratio':>8}{'mean ms':>9}{'max ms':>9}{'non-200':>9}{'sock err':>9}"
        f"{'cpu µs/req':>12}{'other cpu':>11}  load"
    )
    rows = [header, "-" * len(header)]
    # A run's ratio is to the baseline of its own pair (the order within a pair alternates).
    baseline = {(r.extra.get("pair"), r.concurrency): r for r in results if r.server == "baseline"}
    for r in results:
        ratio = ""
        base = baseline.get((r.extra.get("pair"), r.concurrency))
        if r.server != "baseline" and base is not None and base.rps > 0:
            ratio = f"{r.rps / base.rps:.2f}"
        cpu = f"{r.cpu_us_per_req:.0f}" if r.cpu_us_per_req is not None else "?"
        rows.append(
            f"{r.concurrency:<12}{r.server:<18}{r.rps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{ratio:>8}{r.mean_ms:>9.2f}{r.max_ms:>9.1f}{r.non200:>9}{r.socket_errors:>9}"
            f"{cpu:>12}{r.others_pct:>10.0f}%  {r.load}"
        )
    return "\n".join(rows)
