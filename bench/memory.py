# ruff: noqa: E402, I001
"""A worker's memory, and what a big phone photo costs (issue 13, part 3).

    python bench/memory.py [--jobs 1000,10000] [--megapixels 40] [--repeat 3]

1. A real `python -m searchjobs worker` (search replaced by bench.trivial_backend): its RSS at start
   (idle, after imports), after the first and the second --jobs count of small jobs (16x16 PNG
   uploads, as bench/throughput.py submits them: it must not grow), then its peak RSS (VmHWM) and
   job time for one job whose upload is a --megapixels JPEG (a smooth synthetic scene with noise,
   saved at quality 85: under the 10 MB upload cap).
2. The same photo in fresh processes, --repeat times each: peak RSS and time of what the worker does
   with it (validate_image_bytes, then intake.open_image and descriptor.analyse), as the product
   does it (the header checked, the pixels decoded once by open_image), as round 2 did it (a full
   integrity decode, then open_image) and as a full-resolution decode (Image.open + load + exif_transpose + convert, the
   open_image of before issue 13) for comparison; a 1-megapixel JPEG of the same scene as the anchor
   ("a big photo costs about what a small one does").
RSS is /proc/<pid>/status (VmRSS now, VmHWM the peak).
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import io
import json
import os
import signal
import subprocess
import tempfile
import time

from bench.common import ROOT, RESULTS_DIR, Servers, log, median, summary_line, table, write_results

CATEGORIES = ["dress", "top", "shoes"]
TRIVIAL_BACKEND = "bench.trivial_backend:factory"
WORKER_LOG = RESULTS_DIR / "memory-workers.log"


def rss_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def photo_jpeg(megapixels: float, seed: int = 0) -> bytes:
    """A smooth scene (gradient wall, a garment-like blob) with mild noise: phone-photo-like bytes."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(megapixels * 1e6 / width)
    small = Image.new("RGB", (800, 600))
    draw = ImageDraw.Draw(small)
    for y in range(600):
        draw.line([(0, y), (800, y)], fill=(180 - y // 10, 170 - y // 12, 150 - y // 15))
    draw.ellipse([250, 120, 550, 520], fill=(150, 30, 50))
    draw.rectangle([330, 80, 470, 200], fill=(140, 25, 45))
    big = small.filter(ImageFilter.GaussianBlur(3)).resize((width, height), Image.Resampling.BILINEAR)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(big, dtype=np.int16)
    pixels = np.clip(pixels + rng.integers(-3, 4, size=pixels.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


# -- part 2: one photo in a fresh process ---------------------------------------------------------------

def probe(path: str, how: str) -> None:
    """Run in a fresh process: what the worker does with the photo; prints JSON (times, RSS)."""
    from PIL import Image, ImageOps

    from searchjobs import intake
    from searchjobs.catalog import descriptor

    data = Path(path).read_bytes()
    descriptor.analyse(Image.new("RGB", (32, 32)))  # imports and first-call costs out of the figure
    before = rss_mb(os.getpid())
    started = time.perf_counter()
    # the product checks the header, then decodes once in open_image; "validate twice" is round 2's path
    validated = intake.validate_image_bytes(data, "image/jpeg", intake.IntakeLimits(), decode=how != "product")
    validated_at = time.perf_counter()
    if how in ("product", "twice"):
        image = intake.open_image(validated)
    else:  # the full-resolution decode of before
        with Image.open(io.BytesIO(validated.data)) as img:
            img.load()
            image = ImageOps.exif_transpose(img).convert("RGB")
    opened_at = time.perf_counter()
    descriptor.analyse(image)
    done = time.perf_counter()
    after = rss_mb(os.getpid())
    print(json.dumps({"how": how, "decoded_size": list(image.size), "validate_ms": (validated_at - started) * 1000,
                      "open_ms": (opened_at - validated_at) * 1000, "analyse_ms": (done - opened_at) * 1000,
                      "total_ms": (done - started) * 1000, "rss_start_mb": before["VmRSS"],
                      "peak_mb": after["VmHWM"], "peak_growth_mb": after["VmHWM"] - before["VmHWM"]}))


def run_probe(path: Path, how: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--probe", how, str(path)], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- part 1: a real worker -------------------------------------------------------------------------------

def wait_completed(servers: Servers, count: int, timeout: float = 1800) -> None:
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FILTER (WHERE status IN ('completed', 'failed')) FROM search_jobs")
                done = cur.fetchone()[0]
            if done >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} jobs finished; see {WORKER_LOG}")
            time.sleep(0.2)
    finally:
        conn.close()


def worker_memory(servers: Servers, counts: list[int], big: bytes) -> dict:
    from searchjobs import intake
    from searchjobs.service import submit

    servers.truncate_jobs()
    servers.redis().flushall()
    rt = servers.runtime()
    env = servers.env(SEARCHJOBS_SEARCH_BACKEND=TRIVIAL_BACKEND)
    handle = open(WORKER_LOG, "ab")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([sys.executable, "-m", "searchjobs", "worker"], cwd=ROOT, env=env, stdout=handle,
                              stderr=handle)
    out = {}
    try:
        small = intake.validate_image_bytes(tiny_png(), "image/png", intake.IntakeLimits())

        def submit_many(n: int, image) -> None:
            for _ in range(n):
                submit(rt, categories=CATEGORIES, image=image, image_url=None, phone_number=None, country_code=None,
                       client_id=None, idempotency_key=None, request_hash=None)

        # the first small job warms every code path (imports, pools, the first descriptor call)
        submit_many(1, small)
        wait_completed(servers, 1)
        time.sleep(1.0)
        out["start"] = rss_mb(worker.pid)
        done = 1
        for count in counts:
            submit_many(count - done, small)
            wait_completed(servers, count)
            done = count
            out[f"after_{count}"] = rss_mb(worker.pid)
            log(f"  worker after {count} jobs: {out[f'after_{count}']}")
        photo = intake.validate_image_bytes(big, "image/jpeg", intake.IntakeLimits())
        submit_many(1, photo)
        wait_completed(servers, done + 1)
        out["after_big_photo"] = rss_mb(worker.pid)
        import psycopg2

        conn = psycopg2.connect(servers.database_url)
        with conn.cursor() as cur:
            cur.execute("SELECT status, extract(epoch FROM finished_at - started_at) * 1000 FROM search_jobs "
                        "ORDER BY created_at DESC LIMIT 1")
            status, took = cur.fetchone()
        conn.close()
        out["big_photo_job"] = {"status": status, "ms": float(took)}
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        handle.close()
        rt.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="1000,10000", help="job counts after which the worker's RSS is read")
    parser.add_argument("--megapixels", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probe", nargs=2, metavar=("HOW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[1], args.probe[0])
        return
    counts = [int(x) for x in args.jobs.split(",")]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    WORKER_LOG.write_bytes(b"")

    big, small_photo = photo_jpeg(args.megapixels), photo_jpeg(1.0)
    log(f"{args.megapixels:.0f}-megapixel JPEG: {len(big) / 1e6:.1f} MB; 1-megapixel: {len(small_photo) / 1e6:.2f} MB")
    folder = Path(tempfile.mkdtemp(prefix="searchjobs-memory-"))
    (folder / "big.jpg").write_bytes(big)
    (folder / "small.jpg").write_bytes(small_photo)
    probes = {}
    for label, path, how in (("big, as the product", "big.jpg", "product"),
                             ("big, full integrity decode then open_image (round 2)", "big.jpg", "twice"),
                             ("big, full-resolution decode", "big.jpg", "full"),
                             ("1 MP, as the product", "small.jpg", "product")):
        probes[label] = [run_probe(folder / path, how) for _ in range(args.repeat)]
        log(f"  {label}: {probes[label][-1]}")

    with Servers(pg_stat_statements=False) as servers:
        worker = worker_memory(servers, counts, big)

    print()
    rows = [["at start (idle, warmed by one job)", worker["start"]["VmRSS"], worker["start"]["VmHWM"]]]
    rows += [[f"after {c} jobs", worker[f"after_{c}"]["VmRSS"], worker[f"after_{c}"]["VmHWM"]] for c in counts]
    rows.append([f"after one {args.megapixels:.0f} MP JPEG job ({worker['big_photo_job']['status']}, "
                 f"{worker['big_photo_job']['ms']:.0f} ms)", worker["after_big_photo"]["VmRSS"],
                 worker["after_big_photo"]["VmHWM"]])
    table(["searchjobs worker", "RSS MB", "peak RSS MB"], rows, title="A worker's memory (one process)")
    print()

    def med(label, key):
        return median([p[key] for p in probes[label]])

    table(["photo, fresh process", "decoded at", "validate ms", "open ms", "analyse ms", "total ms", "peak RSS MB",
           "peak growth MB"],
          [[label, "x".join(map(str, probes[label][0]["decoded_size"])), med(label, "validate_ms"),
            med(label, "open_ms"), med(label, "analyse_ms"), med(label, "total_ms"), med(label, "peak_mb"),
            med(label, "peak_growth_mb")] for label in probes],
          title=f"One photo through validate + open_image + analyse, median of {args.repeat}")
    last = counts[-1]
    summary = {
        "rss_start_mb": worker["start"]["VmRSS"], f"rss_after_{counts[0]}_mb": worker[f"after_{counts[0]}"]["VmRSS"],
        f"rss_after_{last}_mb": worker[f"after_{last}"]["VmRSS"],
        "worker_peak_big_photo_mb": worker["after_big_photo"]["VmHWM"],
        "big_photo_job_ms": worker["big_photo_job"]["ms"],
        "big_photo_ms": med("big, as the product", "total_ms"),
        "big_photo_round2_ms": med("big, full integrity decode then open_image (round 2)", "total_ms"),
        "big_photo_full_decode_ms": med("big, full-resolution decode", "total_ms"),
        "small_photo_ms": med("1 MP, as the product", "total_ms"),
        "big_photo_peak_mb": med("big, as the product", "peak_mb"),
        "big_photo_round2_peak_mb": med("big, full integrity decode then open_image (round 2)", "peak_mb"),
        "big_photo_full_decode_peak_mb": med("big, full-resolution decode", "peak_mb"),
    }
    write_results("memory", {"args": vars(args), "worker": worker, "probes": probes, "summary": summary,
                             "photo_bytes": len(big)})
    print(summary_line("memory", summary))


if __name__ == "__main__":
    main()
