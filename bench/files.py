"""Files through the API beside the same bytes straight to the same storage (the local disk):
upload and download throughput (goal: API / direct >= 0.7), the API process's memory while a
big file streams through it, and thumbnail latency (first view, then kept).

Prints a markdown table. BENCH_FILE_MB (default 19, under notes' 20 MB field) is the file
size, BENCH_FILES (default 5) how many are sent one after another. Set DATABASE_URL /
REDIS_URL to use real servers; otherwise embedded ones are started (as bench/crud.py does).

Beside the API's figures: the floor, what uvicorn and this client move per second into an app
that only drops the body (bench/files_apps.py: ``sink``). ``--big`` (or BENCH_BIG=1) also sends
BENCH_BIG_MB (default 1024) as one multipart create and as one tus upload, each streamed from a
generator (never whole in the client, never on disk twice), and reports the API process's
memory: peak resident size sampled every 10 ms, and the kernel's high-water mark (VmHWM).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from crud import embedded_services, free_port, serve, stop  # noqa: E402

from backend.config import settings_from_env  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.files.storage import open_storage  # noqa: E402

MB = 1024 * 1024
FILE_MB = int(os.environ.get("BENCH_FILE_MB", "19"))
FILES = int(os.environ.get("BENCH_FILES", "5"))
BIG = "--big" in sys.argv or os.environ.get("BENCH_BIG") == "1"
BIG_MB = int(os.environ.get("BENCH_BIG_MB", "1024"))
CHUNK = 256 * 1024


def pdf_chunks(size: int):
    """A file that sniffs as a PDF, ``size`` bytes, made as it is sent (never whole here)."""
    yield b"%PDF-1.4\n" + b"%" * (CHUNK - 9)
    sent = CHUNK
    block = bytes(range(256)) * (CHUNK // 256)
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece


class Multipart:
    """A multipart body streamed from ``pdf_chunks`` (httpx would read a generator whole)."""

    def __init__(self, size: int) -> None:
        self.boundary = "benchboundary7f3a"
        self.head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="data"\r\n\r\n'
            '{"title": "bench"}\r\n'
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="attachments";'
            ' filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.size = size

    def __iter__(self):
        yield self.head
        yield from pdf_chunks(self.size)
        yield self.tail

    @property
    def headers(self) -> dict[str, str]:
        length = len(self.head) + self.size + len(self.tail)
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(length),
        }


class PeakMemory:
    """The highest resident memory of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.start = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def high_water(pid: int) -> int:
    """The process's peak resident size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def tus_upload(client: httpx.Client, note_id: str, size: int) -> str:
    """``size`` bytes as one tus upload (created, then one streamed PATCH); the stored name."""
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in (("collection", "notes"), ("record", note_id), ("field", "attachments"),
                     ("filename", "big.pdf"))
    )  # fmt: skip
    tus = {"Tus-Resumable": "1.0.0"}
    made = client.post(
        "/files/uploads", headers={**tus, "Upload-Length": str(size), "Upload-Metadata": meta}
    )
    assert made.status_code == 201, made.text
    sent = client.patch(
        made.headers["location"],
        content=pdf_chunks(size),
        headers={
            **tus,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(size),
        },
    )
    assert sent.status_code == 204, sent.text
    return sent.headers["litebase-file-name"]


def sink_throughput(size: int) -> float:
    """MB/s this client sends into an app that drops the body (uvicorn, no framework)."""
    port = free_port()
    sink = serve(
        [sys.executable, "-m", "uvicorn", "bench.files_apps:sink", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        dict(os.environ), port,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            started = time.perf_counter()
            for _ in range(FILES):
                answer = client.post(
                    "/", content=pdf_chunks(size), headers={"Content-Length": str(size)}
                )
                assert answer.status_code == 204
            return FILES * size / (time.perf_counter() - started) / MB
    finally:
        stop(sink)


def big_uploads(env: dict[str, str]) -> list[tuple[str, str]]:
    """BIG_MB as one multipart create and as one tus upload, with the API's memory."""
    size = BIG_MB * MB
    port = free_port()
    env = {**env, "FILES_MAX_UPLOAD_BYTES": str(size + MB)}
    api = serve(
        [sys.executable, "-m", "uvicorn", "bench.files_apps:big_app", "--factory", "--port",
         str(port), "--no-access-log", "--log-level", "warning"],
        env, port,
    )  # fmt: skip
    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            email = f"bench-big-{time.time_ns()}@example.com"
            tokens = client.post("/auth/signup", json={"email": email, "password": "bench pw 12"})
            client.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
            for kind in ("multipart", "tus"):
                before_hwm = high_water(api.pid)
                with PeakMemory(api.pid) as memory:
                    started = time.perf_counter()
                    if kind == "multipart":
                        body = Multipart(size)
                        answer = client.post(
                            "/collections/notes/records", content=iter(body), headers=body.headers
                        )
                        assert answer.status_code == 201, answer.text
                    else:
                        note = client.post("/collections/notes/records", json={"title": "big"})
                        tus_upload(client, note.json()["id"], size)
                    rate = size / (time.perf_counter() - started) / MB
                after_hwm = high_water(api.pid)
                rows.append(
                    (
                        f"{BIG_MB} MB as one {kind} upload: API process RSS before / peak"
                        " (sampled) / VmHWM before -> after",
                        f"{memory.start / MB:.0f} / {memory.peak / MB:.0f} MB (+"
                        f"{(memory.peak - memory.start) / MB:.1f}) / {before_hwm / MB:.0f} -> "
                        f"{after_hwm / MB:.0f} MB; {rate:.0f} MB/s",
                    )
                )
    finally:
        stop(api)
    return rows


def main() -> None:
    with embedded_services() as (database_url, redis_url), tempfile.TemporaryDirectory() as tmp:
        run(database_url, redis_url, Path(tmp))


def run(database_url: str, redis_url: str, tmp: Path) -> None:
    upgrade(database_url)
    env = {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITEBASE_ENV": "test",
        "LOG_LEVEL": "WARNING", "RELAY_ENABLED": "false", "RATE_LIMIT_SIGNUP_PER_MINUTE": "1000",
        "FILES_LOCAL_DIR": str(tmp / "api-files"),
    }  # fmt: skip
    port = free_port()
    api = serve(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env, port,
    )  # fmt: skip
    size = FILE_MB * MB
    rows: list[tuple[str, str]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            email = f"bench-{time.time_ns()}@example.com"
            tokens = client.post("/auth/signup", json={"email": email, "password": "bench pw 12"})
            client.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"

            # Upload: through the API, streamed from a generator.
            uploaded = []
            with PeakMemory(api.pid) as memory:
                started = time.perf_counter()
                for _ in range(FILES):
                    body = Multipart(size)
                    answer = client.post(
                        "/collections/notes/records", content=iter(body), headers=body.headers
                    )
                    assert answer.status_code == 201, answer.text
                    uploaded.append(answer.json())
                api_upload = FILES * size / (time.perf_counter() - started) / MB

            # The same through tus: one upload of one PATCH per file, into a note.
            notes = [
                client.post("/collections/notes/records", json={"title": "tus"}).json()["id"]
                for _ in range(FILES)
            ]
            started = time.perf_counter()
            for note_id in notes:
                tus_upload(client, note_id, size)
            tus_rate = FILES * size / (time.perf_counter() - started) / MB

            # Upload: the same bytes straight to the same kind of storage.
            settings = settings_from_env({}, env="test", files_local_dir=str(tmp / "direct"))
            storage = open_storage(settings)

            async def direct_upload() -> float:
                async def chunks():
                    for piece in pdf_chunks(size):
                        yield piece

                began = time.perf_counter()
                for i in range(FILES):
                    await storage.put(f"bench/{i}.pdf", chunks())
                return FILES * size / (time.perf_counter() - began) / MB

            direct_up = asyncio.run(direct_upload())

            # Download: through the API, and straight from storage.
            started = time.perf_counter()
            for note in uploaded:
                url = f"/files/notes/{note['id']}/{note['attachments'][0]}"
                with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    for _ in response.iter_bytes(CHUNK):
                        pass
            api_download = FILES * size / (time.perf_counter() - started) / MB

            async def direct_download() -> float:
                began = time.perf_counter()
                for i in range(FILES):
                    opened = await storage.open(f"bench/{i}.pdf")
                    async for _ in opened.chunks:
                        pass
                return FILES * size / (time.perf_counter() - began) / MB

            direct_down = asyncio.run(direct_download())

            # Thumbnails: a 4000x3000 photo, its first 100x100 view and the kept one.
            picture = io.BytesIO()
            Image.new("RGB", (4000, 3000), (200, 120, 40)).save(picture, "JPEG", quality=90)
            photo = client.post(
                "/collections/notes/records",
                data={"data": '{"title": "photo"}'},
                files=[("attachments", ("photo.jpg", picture.getvalue(), "image/jpeg"))],
            ).json()
            thumb = f"/files/notes/{photo['id']}/{photo['attachments'][0]}?thumb=100x100"
            began = time.perf_counter()
            assert client.get(thumb).status_code == 200
            first = (time.perf_counter() - began) * 1000
            kept = []
            for _ in range(20):
                began = time.perf_counter()
                client.get(thumb)
                kept.append((time.perf_counter() - began) * 1000)
    finally:
        stop(api)
    floor = sink_throughput(size)
    big_rows = big_uploads(env) if BIG else []

    growth = (memory.peak - memory.start) / MB
    rows += [
        (f"upload, {FILES} x {FILE_MB} MB, through the API", f"{api_upload:.0f} MB/s"),
        ("upload, the same bytes straight to storage", f"{direct_up:.0f} MB/s"),
        ("upload: API / direct (goal >= 0.7)", f"{api_upload / direct_up:.2f}"),
        ("upload through tus (one PATCH per file)", f"{tus_rate:.0f} MB/s"),
        ("floor: the same client into uvicorn dropping the body", f"{floor:.0f} MB/s"),
        ("floor / direct (the best the goal's ratio can be here)", f"{floor / direct_up:.2f}"),
        ("upload: API / floor", f"{api_upload / floor:.2f}"),
        ("download through the API", f"{api_download:.0f} MB/s"),
        ("download straight from storage", f"{direct_down:.0f} MB/s"),
        ("download: API / direct (goal >= 0.7)", f"{api_download / direct_down:.2f}"),
        (
            f"API process memory while {FILES * FILE_MB} MB streamed in (peak - before)",
            f"{growth:.1f} MB ({growth / (FILES * FILE_MB):.2f} of the bytes sent)",
        ),
        ("thumbnail 100x100 of a 4000x3000 JPEG, first view", f"{first:.0f} ms"),
        ("the same, kept (median of 20)", f"{statistics.median(kept):.1f} ms"),
        *big_rows,
    ]
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
