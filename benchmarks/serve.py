"""Benchmark of ``fusionrec serve`` on loopback: throughput and latency under concurrent clients.

    python benchmarks/serve.py                   # 2,640 training photos indexed; 1, 4, 16 clients
    python benchmarks/serve.py --items 100000    # padded with look-alike vectors to 100,000 items
    python benchmarks/serve.py --workers 2       # the server's --workers
    python benchmarks/serve.py --items 100000 --search ivf  # faiss's inverted file
    python benchmarks/serve.py --duration 3 --catalogue 40 --queries 20 --clients 1 4  # smoke run

The script indexes the Grocery Store training photos and saves the index; then, for batching
on (the defaults) and off (one photo per batch), it starts ``python -m fusionrec serve``
itself and runs each number of clients for --duration seconds.
Each client sends test photos to ``POST /search?k=10`` one after the other. It prints
requests per second, p50 / p95 / p99 latency, failed requests and the server's resident memory
at start and end, the cores the server and the load generator kept busy on average (CPU
seconds per second: both share the machine's cores), and the offline rate of
``ProductIndex.query`` over the same photos in one batch call, measured in the same run. The
goals (issue #18) are checked at the end. ``--client httpx`` encodes every upload again in
Python (the first version of this benchmark), which takes cores from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split
from search import grown_with_look_alikes

from fusionrec import ProductIndex
from fusionrec.cli.model_file import save

REPOSITORY = Path(__file__).resolve().parents[1]
K = 10
BATCHING = {"on": [], "off": ["--max-batch", "1", "--batch-window-ms", "0"]}
GOAL_P95_ONE_CLIENT_MS = 100
GOAL_P95_FOUR_CLIENTS_LARGE_MS = 150
GOAL_THROUGHPUT_FRACTION = 0.8
LARGE = 100_000
BOUNDARY = "fusionrec-benchmark-boundary"


def built_index(root: Path, n_catalogue: int | None, n_items: int | None):
    """The index of the training photos (ids: paths below ``root``), padded to ``n_items``.

    No feature cache (``memory``): an index fitted with one would also cache the features of
    every photo the server is sent.
    """
    catalogue, _ = load_split(root, "train")
    catalogue = catalogue[:n_catalogue]
    ids = [Path(path).relative_to(root).as_posix() for path in catalogue]
    started = time.perf_counter()
    index = ProductIndex(random_state=0).fit(catalogue, ids)
    print(f"indexed {len(ids)} training photos in {time.perf_counter() - started:.0f} s")
    if n_items and n_items > len(ids):
        index = grown_with_look_alikes(index, n_items)
        print(f"padded to {len(index.ids_):,} items with look-alike vectors")
    return index


def offline_rate(index: ProductIndex, photos: list[bytes]) -> float:
    """Photos per second of ``ProductIndex.query`` over all the photos in one call."""
    index.query(photos[:4], k=K)  # warm up: ONNX export, thread pools
    started = time.perf_counter()
    index.query(photos, k=K)
    return len(photos) / (time.perf_counter() - started)


def resident_mib(pid: int) -> float:
    """A process's resident memory (Linux ``/proc``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def started_server(index_file: Path, port: int, options: list[str], log: Path):
    paths = [str(REPOSITORY), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [
        sys.executable,
        "-m",
        "fusionrec",
        "serve",
        str(index_file),
        "--port",
        str(port),
        "--no-access-log",
        "--state",
        str(index_file.parent / f"state-{port}"),
        *options,
    ]
    output = open(log, "ab")  # noqa: SIM115 (the server writes to it until it ends)
    server = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def multipart_body(photo: bytes) -> bytes:
    """``photo`` as the body of a ``multipart/form-data`` upload in the field ``file``."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


class Client:
    """Uploads of the photos to ``POST /search``, encoded once, over ``n_clients`` connections.

    ``kind="aiohttp"`` sends the pre-encoded bodies with aiohttp (its HTTP
    parser is compiled), so that the load generator, which shares the
    machine's cores with the server, takes little of them; ``"httpx"``
    encodes every upload again in Python, as the first version of this
    benchmark did.
    """

    def __init__(self, kind: str, url: str, photos: list[bytes], n_clients: int) -> None:
        self.kind, self.url, self.n_clients = kind, url, n_clients
        self.photos = photos
        self.bodies = [multipart_body(photo) for photo in photos]

    async def __aenter__(self) -> Client:
        if self.kind == "httpx":
            limits = httpx.Limits(max_connections=self.n_clients)
            self.session = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=60)
        else:
            connector = aiohttp.TCPConnector(limit=self.n_clients)
            timeout = aiohttp.ClientTimeout(total=60)
            self.session = aiohttp.ClientSession(self.url, connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await (self.session.aclose() if self.kind == "httpx" else self.session.close())

    async def search(self, turn: int) -> bool:
        """Upload photo ``turn`` (modulo their number); whether the answer was 200."""
        turn %= len(self.photos)
        if self.kind == "httpx":
            answer = await self.session.post(
                f"/search?k={K}", files={"file": ("photo.jpg", self.photos[turn])}
            )
            return answer.status_code == 200
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        async with self.session.post(
            f"/search?k={K}", data=self.bodies[turn], headers=headers
        ) as answer:
            await answer.read()
            return answer.status == 200


async def one_client(http: Client, first: int, until: float, latencies, failures) -> None:
    """Send photos one after another until ``until``; note each latency and each failure."""
    turn = first
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            ok = await http.search(turn)
        except (httpx.HTTPError, aiohttp.ClientError):
            ok = False
        turn += 1
        (latencies if ok else failures).append(time.perf_counter() - started)


async def load(kind: str, url: str, photos: list[bytes], n_clients: int, seconds: float):
    """Run ``n_clients`` clients for ``seconds``; their latencies and failures."""
    latencies: list[float] = []
    failures: list[float] = []
    async with Client(kind, url, photos, n_clients) as http:
        for turn in range(2):  # untimed: connections and the first batch
            await http.search(turn)
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(one_client(http, n * 7, until, latencies, failures) for n in range(n_clients))
        )
    return np.array(latencies), len(failures)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> None:
    queries, _ = load_split(args.root, "test")
    photos = [Path(path).read_bytes() for path in queries[: args.queries]]
    index = built_index(args.root, args.catalogue, args.items).set_params(search=args.search)
    rate = offline_rate(index, photos)
    print(f"offline: ProductIndex.query of {len(photos)} test photos in one call: {rate:.1f}/s")
    folder = Path(tempfile.mkdtemp(prefix="fusionrec-serve-bench-"))
    index_file = save(index, folder / "index.joblib", kind="index", folder=str(args.root))
    del index
    log = folder / "server.log"
    print(f"server log: {log}")
    print(
        f"{'batching':8} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7}"
        f" {'p99 ms':>7} {'failed':>6} {'RSS start':>9} {'RSS end':>8}"
        f" {'server CPU':>10} {'client CPU':>10}"
    )
    results = {}
    for batching in args.batching:
        port = 8700 + len(results)
        options = [*BATCHING[batching], "--workers", str(args.workers)]
        server = started_server(index_file, port, options, log)
        try:
            for n_clients in args.clients:
                start_rss = resident_mib(server.pid)
                server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
                latencies, failed = asyncio.run(
                    load(args.client, f"http://127.0.0.1:{port}", photos, n_clients, args.duration)
                )
                server_cpu = cpu_seconds(server.pid) - server_cpu
                client_cpu = time.process_time() - client_cpu
                end_rss = resident_mib(server.pid)
                p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) * 1000
                throughput = len(latencies) / args.duration
                results[batching, n_clients] = (throughput, p95, failed)
                print(
                    f"{batching:8} {n_clients:7} {len(latencies):8} {throughput:7.1f}"
                    f" {p50:7.1f} {p95:7.1f} {p99:7.1f} {failed:6} {start_rss:7.0f} MiB"
                    f" {end_rss:5.0f} MiB {server_cpu / args.duration:10.2f}"
                    f" {client_cpu / args.duration:10.2f}"
                )
        finally:
            server.terminate()
            server.wait(60)
    report_goals(results, rate, args.items or 0)


def report_goals(results: dict, offline: float, n_items: int) -> None:
    """Each of issue #18's goals that this run measured: met or not."""
    print("goals:")
    failed = sum(failures for _, _, failures in results.values())
    print(f"  0 failed requests: {'met' if failed == 0 else f'NOT met ({failed})'}")
    if n_items >= LARGE and ("on", 4) in results:
        p95 = results["on", 4][1]
        met = p95 <= GOAL_P95_FOUR_CLIENTS_LARGE_MS
        print(
            f"  p95 at 4 clients <= {GOAL_P95_FOUR_CLIENTS_LARGE_MS} ms: {p95:.1f} ms, "
            f"{'met' if met else 'NOT met'}"
        )
    elif n_items < LARGE:
        for batching in ("on", "off"):
            if (batching, 1) in results:
                p95 = results[batching, 1][1]
                met = p95 <= GOAL_P95_ONE_CLIENT_MS
                print(
                    f"  p95 at 1 client <= {GOAL_P95_ONE_CLIENT_MS} ms (batching {batching}):"
                    f" {p95:.1f} ms, {'met' if met else 'NOT met'}"
                )
        if ("on", 16) in results:
            throughput = results["on", 16][0]
            met = throughput >= GOAL_THROUGHPUT_FRACTION * offline
            print(
                f"  16 clients >= {GOAL_THROUGHPUT_FRACTION} x offline rate ({offline:.1f}/s):"
                f" {throughput:.1f}/s, {'met' if met else 'NOT met'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batching", nargs="+", choices=list(BATCHING), default=list(BATCHING))
    parser.add_argument("--items", type=int, default=None, help="pad the index to this size")
    parser.add_argument(
        "--catalogue", type=int, default=None, help="index only the first N training photos"
    )
    parser.add_argument("--queries", type=int, default=200, help="test photos the clients send")
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers")
    parser.add_argument(
        "--search", choices=["exact", "ivf"], default="exact", help="the index's search"
    )
    parser.add_argument(
        "--client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="the load generator: pre-encoded uploads (aiohttp) or encoded per request (httpx)",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
