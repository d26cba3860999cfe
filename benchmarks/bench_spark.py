"""Spark benchmark: pages per minute of the seed pipeline on local[N] against `ocr_files` in one process.

    python benchmarks/bench_spark.py [--pages 20] [--master local[2]] [--width 500] [--partitions 2]

The same pages (copies of examples/*.png) and the same options (the issue's seed pipeline, refiner off:
width 500, linkThreshold 0.3, sizeThreshold -1) go through

1. `ocr_files` in this process (models loaded and one page run first, so it is warm), on all the
   process's threads, then again on one thread (`ocr_base.threads.set_threads(1)`), as each Spark task runs;
2. a cold process with an empty NUMBA_CACHE_DIR: import, model load, first page (Numba compiles), second page;
3. Spark: session start; per Python worker, model load and first / second page (Numba from its disk cache);
   two untimed warm-up runs of the whole pipeline (so the stages' workers have their models), then the timed
   run of the four stages over all pages (`write.format("noop")` computes every column, drawing included).

Spark's overhead = Spark seconds / ocr_files seconds - 1, once warm. Goal: <= 15%. Both are also given in
CPU seconds of the whole process tree (the JVM and Spark's Python workers included), which a machine
shared with other jobs does not skew the way it skews wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from trocr_np.pipeline import PageOptions, ocr_page, resolve_detector, resolve_model
from detector_np import DetectOptions
t1 = time.perf_counter()
o = PageOptions(detect=DetectOptions(width=%(width)d, link_threshold=0.3, size_threshold=-1))
m = resolve_model(None); craft, _ = resolve_detector(None, o.detect)
t2 = time.perf_counter()
ocr_page(sys.argv[1], m, craft, o)
t3 = time.perf_counter()
ocr_page(sys.argv[1], m, craft, o)
t4 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, load_s=t2 - t1, first_page_s=t3 - t2, second_page_s=t4 - t3)))
"""


def tree_cpu_seconds() -> float:
    """CPU seconds (user + sys) of this process and every live descendant (the JVM, Spark's Python daemon
    and workers), including what their reaped children used. Linux /proc only."""
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(f[1]), sum(int(x) for x in f[11:15]))     # ppid, utime+stime+cutime+cstime
    tree, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [c for c, (ppid, _) in stats.items() if ppid == pid and c not in tree]
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def seed_pipeline(width):
    from trocr_np.spark import BinaryToImage, Color, ImageDrawRegions, ImageTextDetectorV2, ImageToTextV2, \
        ImageType, PipelineModel
    return PipelineModel(stages=[
        BinaryToImage().setImageType(ImageType.TYPE_3BYTE_BGR),
        ImageTextDetectorV2.pretrained().setInputCol("image").setOutputCol("text_regions")
        .setWithRefiner(False).setSizeThreshold(-1).setLinkThreshold(0.3).setWidth(width),
        ImageToTextV2.pretrained().setInputCols(["image", "text_regions"]).setGroupImages(True)
        .setOutputCol("text").setRegionsColumn("text_regions"),
        ImageDrawRegions().setInputCol("image").setInputRegionsCol("text_regions")
        .setOutputCol("image_with_regions").setRectColor(Color.green).setRotated(True)])


def warmup_probe(width, page_path):
    """A mapInPandas function: in a fresh worker, time model loads and two pages (what a worker pays once)."""
    def probe(batches):
        import pandas as pd
        t0 = time.perf_counter()
        from trocr_np.spark import worker
        from trocr_np.pipeline import PageOptions, ocr_page
        from detector_np import DetectOptions
        t1 = time.perf_counter()
        worker.use_task_cpus()
        craft, _ = worker.detector_params(worker.CRAFT_NAME, None)
        t2 = time.perf_counter()
        model = worker.recognizer_model(worker.BUNDLED_NAME)
        t3 = time.perf_counter()
        o = PageOptions(detect=DetectOptions(width=width, link_threshold=0.3, size_threshold=-1))
        ocr_page(page_path, model, craft, o)
        t4 = time.perf_counter()
        ocr_page(page_path, model, craft, o)
        t5 = time.perf_counter()
        for _ in batches:
            pass
        yield pd.DataFrame(dict(pid=[os.getpid()], import_s=t1 - t0, craft_s=t2 - t1, trocr_s=t3 - t2,
                                first_page_s=t4 - t3, second_page_s=t5 - t4))
    return probe


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold-Numba-cache process")
    a = ap.parse_args(argv)

    examples = sorted((ROOT / "examples").glob("*.png"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    pages_dir, warm_dir = tmp / "pages", tmp / "warm"
    pages_dir.mkdir()
    warm_dir.mkdir()
    for k in range(a.pages):
        shutil.copy(examples[k % len(examples)], pages_dir / f"p{k:03d}.png")
    for k in range(2 * a.partitions):
        shutil.copy(examples[k % len(examples)], warm_dir / f"w{k:03d}.png")
    print(f"{a.pages} pages ({', '.join(p.name for p in examples)} alternating), width {a.width}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # 1. one process
    from detector_np import DetectOptions
    from trocr_np.pipeline import PageOptions, ocr_files, ocr_page, resolve_detector, resolve_model
    o = PageOptions(detect=DetectOptions(width=a.width, link_threshold=0.3, size_threshold=-1))
    t = time.perf_counter()
    model, (craft, _) = resolve_model(None), resolve_detector(None, o.detect)
    ocr_page(examples[0], model, craft, o)
    warm_local = time.perf_counter() - t
    t, c = time.perf_counter(), tree_cpu_seconds()
    results = list(ocr_files([pages_dir], model, craft, o))
    local_s, local_cpu = time.perf_counter() - t, tree_cpu_seconds() - c
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    print(f"ocr_files, one process: {local_s:.1f} s = {a.pages / local_s * 60:.2f} pages/min, "
          f"{local_cpu / a.pages:.1f} CPU s/page (after {warm_local:.1f} s model load + first page)")

    # the same on one thread: CPU per page without our worker threads' and OpenBLAS's waiting
    from ocr_base import threads
    n_threads = threads.THREADS
    threads.set_threads(1)
    t, c = time.perf_counter(), tree_cpu_seconds()
    list(ocr_files([pages_dir], model, craft, o))
    one_s, one_cpu = time.perf_counter() - t, tree_cpu_seconds() - c
    threads.set_threads(n_threads)
    print(f"ocr_files, one process, 1 thread: {one_s:.1f} s = {a.pages / one_s * 60:.2f} pages/min, "
          f"{one_cpu / a.pages:.1f} CPU s/page")

    # 2. a cold process: Numba compiles
    if not a.skip_cold:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "numba-cache"), PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", COLD % dict(width=a.width), str(examples[0])], env=env,
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
        c = json.loads(out.strip().splitlines()[-1])
        print(f"cold process (empty Numba cache): import {c['import_s']:.1f} s, model load {c['load_s']:.1f} s, "
              f"first page {c['first_page_s']:.1f} s, second page {c['second_page_s']:.1f} s "
              f"-> compile ~{c['first_page_s'] - c['second_page_s']:.1f} s")

    # 3. Spark
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    from pyspark.sql import SparkSession
    t = time.perf_counter()
    spark = (SparkSession.builder.master(a.master).appName("trocr-np-bench")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "2g")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    print(f"Spark {spark.version} session {a.master}: started in {time.perf_counter() - t:.1f} s")
    try:
        probe = spark.range(0, a.partitions, numPartitions=a.partitions).mapInPandas(
            warmup_probe(a.width, str(examples[0])),
            "pid long, import_s double, craft_s double, trocr_s double, first_page_s double, second_page_s double")
        for r in probe.collect():
            print(f"  worker {r.pid}: import {r.import_s:.1f} s, CRAFT load {r.craft_s:.1f} s, TrOCR load "
                  f"{r.trocr_s:.1f} s, first page {r.first_page_s:.1f} s, second page {r.second_page_s:.1f} s")
        pipe = seed_pipeline(a.width)

        def run(folder):
            df = spark.read.format("binaryFile").load(str(folder)).repartition(a.partitions)
            t, c = time.perf_counter(), tree_cpu_seconds()
            pipe.transform(df).write.format("noop").mode("overwrite").save()
            return time.perf_counter() - t, tree_cpu_seconds() - c
        # each stage is its own mapInPandas, so each runs in its own Python worker, taken from the idle pool:
        # two warm-up runs let most workers load the models their stage needs
        for k in range(2):
            print(f"  warm-up run {k + 1}, {2 * a.partitions} pages: {run(warm_dir)[0]:.1f} s")
        spark_s, spark_cpu = run(pages_dir)
        print(f"Spark {a.master}, {a.partitions} partitions, 4 stages: {spark_s:.1f} s = "
              f"{a.pages / spark_s * 60:.2f} pages/min, {spark_cpu / a.pages:.1f} CPU s/page (JVM included)")
        print(f"overhead once warm: wall {(spark_s / local_s - 1) * 100:+.1f}%, "
              f"CPU {(spark_cpu / local_cpu - 1) * 100:+.1f}% (against 1 thread {(spark_cpu / one_cpu - 1) * 100:+.1f}%) "
              f"(goal <= +15%); "
              f"load average now {os.getloadavg()[0]:.1f}")
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
