"""pytest-xdist past one process (issue 12, docs/distributed.md): catalog items run by execnet
gateways that are separate processes, each in its own working folder with its own cache, one of
them (where podman and the image are here) inside the container image.

Each worker folder stands for one host: it holds its own copy of the catalog (on a real host, the
image's), a pytest.ini that makes it the worker's rootdir, and a conftest.py that records who the
worker is (pid, folder, cache, inside the image or not), so the test can tell that the workers
really were separate and where each ran.  The controller starts in a folder without the catalog:
xdist then passes the relative test paths unchanged and each worker resolves them in its own
folder, the way an ssh worker does.  Job files go to one --leak-report folder given as an absolute
`--leak-report=DIR` (a worker's relative path would land in its own folder); the controller merges
them into results.json.

Then the shards' files: .github/workflows/nightly.yml (its structure, and its durations merge run
with jq on what real shard runs wrote) and deploy/k8s/nightly-indexed-job.yaml (its commands run
by `sh -c` for each JOB_COMPLETION_INDEX, then its merge).  The YAML checks need PyYAML (not a
dependency of the project: skipped without it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PATTERNS = ("x509_name_oneline", "plain_double_free")
TOOLS = "memcheck,asan"
IMAGE = "localhost/leakharness:test"
PODMAN = ("podman", "--runtime", "runc")
# Both patterns expect their findings under memcheck and asan, and no blind spot: 8 items, all pass.
ITEMS = {f"catalog/{p}::{v}[{t}]" for p in PATTERNS for v in ("leaky", "fixed") for t in TOOLS.split(",")}

WHOAMI = '''\
"""Records which process ran this worker, in which folder, with which cache."""
import json, os
from pathlib import Path

def pytest_configure(config):
    if hasattr(config, "workerinput"):
        Path("whoami-%s.json" % config.workerinput["workerid"]).write_text(json.dumps({
            "pid": os.getpid(), "cwd": os.getcwd(), "cache": os.environ.get("LEAKHARNESS_CACHE"),
            "in_image": os.path.isfile("/opt/leakharness/bin/leakharness")}))
'''

pytestmark = pytest.mark.slow


def _worker_folder(root: Path) -> Path:
    """A host's working folder: its own copy of the two patterns (and the shared header)."""
    root.mkdir(parents=True)
    for name in ("_common", *PATTERNS):
        shutil.copytree(REPO / "c_fixtures" / name, root / "catalog" / name)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(WHOAMI)
    return root


def _controller(tmp_path: Path, *tx: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    controller = tmp_path / "controller"
    controller.mkdir()
    (controller / "pytest.ini").write_text("[pytest]\n")
    report, junit = tmp_path / "report", tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--dist", "load",
           *[a for spec in tx for a in ("--tx", spec)],
           *[f"catalog/{p}" for p in PATTERNS], "--leak-tools", TOOLS,
           f"--leak-report={report}", f"--junitxml={junit}", "-v", "-rfEs"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    # This checkout's harness first, so that a copy of the repository tests its own code.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(cmd, cwd=controller, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=300, start_new_session=True)
    return proc, report, junit


def _check_outcome(proc, report: Path, junit: Path) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "8 passed" in out, out[-4000:]
    # JUnit: every item once, none failed or skipped.
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == 8
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None
                or c.find("skipped") is not None]
    # The merged results: every job once, each with the verdict its pattern expects.
    data = json.loads((report / "results.json").read_text())
    names = [(j["pattern"], j["variant"], j["tool"]) for j in data["jobs"]]
    assert sorted(names) == sorted({(p, v, t) for p in PATTERNS for v in ("leaky", "fixed")
                                    for t in TOOLS.split(",")})
    assert {j["verdict"] for j in data["jobs"]} == {"pass"}
    leaks = [j for j in data["jobs"] if j["pattern"] == "x509_name_oneline" and j["variant"] == "leaky"]
    for job in leaks:  # what a user checks: the leak, its size and its function
        assert any(f["category"] == "leak" and (f["bytes"] or 0) >= 428
                   and "X509_NAME_oneline" in json.dumps(f["stack"]) for f in job["findings"]), job
    frees = [j for j in data["jobs"] if j["pattern"] == "plain_double_free" and j["variant"] == "leaky"]
    for job in frees:
        assert any(f["category"] == "double-free" for f in job["findings"]), job
    assert (report / "index.html").is_file()


def _ran_items(out: str) -> dict[str, set[str]]:
    """gw0/gw1 -> the items it reported (the `[gw0] [ 12%] PASSED item` lines of -v)."""
    ran: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith("[gw") and " PASSED " in line:
            ran.setdefault(line[1:4], set()).add(line.split(" PASSED ", 1)[1].strip())
    return ran


def _whoami(folder: Path, worker: str) -> dict:
    return json.loads((folder / f"whoami-{worker}.json").read_text())


def test_two_gateways_in_their_own_folders_with_their_own_caches(tmp_path):
    w1, w2 = _worker_folder(tmp_path / "w1"), _worker_folder(tmp_path / "w2")
    c1, c2 = tmp_path / "cache1", tmp_path / "cache2"
    proc, report, junit = _controller(
        tmp_path, f"popen//chdir={w1}//env:LEAKHARNESS_CACHE={c1}", f"popen//chdir={w2}//env:LEAKHARNESS_CACHE={c2}")
    _check_outcome(proc, report, junit)
    # Two processes, each in its folder with its cache (execnet's chdir= and env:NAME=value).
    gw0, gw1 = _whoami(w1, "gw0"), _whoami(w2, "gw1")
    assert gw0["pid"] != gw1["pid"]
    assert (gw0["cwd"], gw0["cache"]) == (str(w1), str(c1))
    assert (gw1["cwd"], gw1["cache"]) == (str(w2), str(c2))
    # Both ran items (load scheduling hands each worker a share), and between them all of them.
    ran = _ran_items(proc.stdout)
    assert set(ran) == {"gw0", "gw1"} and all(ran.values()), proc.stdout[-3000:]
    assert ran["gw0"] | ran["gw1"] == ITEMS
    # Each worker filled its own cache: one stored result per item it ran, none of the other's.
    for cache, worker in ((c1, "gw0"), (c2, "gw1")):
        assert len(list((cache / "results").rglob("result.json"))) == len(ran[worker]), f"{cache}"


def _podman_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed"
    try:
        proc = subprocess.run([*PODMAN, "image", "exists", IMAGE], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman does not answer: {exc}"
    if proc.returncode != 0:
        return f"no {IMAGE} image (scripts/build-image.sh {IMAGE} builds it; this test does not)"
    # A popen gateway gets the controller's sys.path (xdist does that for popen workers), so the
    # worker in the container runs the controller's own Python, mounted at the same paths: the
    # image has no execnet or pytest-xdist in /opt/leakharness (see docs/distributed.md).
    if Path(sys.base_prefix).resolve().parts[:2] == ("/", "usr"):
        return f"the controller's Python lives under /usr ({sys.base_prefix}): it cannot be mounted into the image"
    return None


@pytest.mark.skipif(_podman_reason() is not None, reason=_podman_reason() or "")
def test_one_gateway_inside_the_image(tmp_path):
    w1, w2 = _worker_folder(tmp_path / "w1"), _worker_folder(tmp_path / "w2")
    c1 = tmp_path / "cache1"
    mounts = []
    for path in sorted({str(REPO), str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}):
        mounts.append(f"-v {path}:{path}:ro")
    # In the container: root (the bind-mounted tmp_path belongs to root here), no network, the
    # ulimits and runtime docs/container.md gives, the worker folder and the report folder mounted;
    # the cache is the image's own (LEAKHARNESS_CACHE=/home/leakharness/.cache/leakharness).
    python = (f"{' '.join(PODMAN)} run -i --rm --network none --ulimit nofile=1024:1024 "
              f"--ulimit nproc=4096:4096 --user 0:0 {' '.join(mounts)} -v {tmp_path}:{tmp_path} -w {w2} "
              f"--entrypoint {sys.executable} {IMAGE}")
    proc, report, junit = _controller(
        tmp_path, f"popen//chdir={w1}//env:LEAKHARNESS_CACHE={c1}", f"popen//python={python}")
    _check_outcome(proc, report, junit)
    gw0, gw1 = _whoami(w1, "gw0"), _whoami(w2, "gw1")
    assert gw0["in_image"] is False and gw1["in_image"] is True
    assert gw1["cache"] == "/home/leakharness/.cache/leakharness"  # the image's, not the host's
    ran = _ran_items(proc.stdout)
    assert set(ran) == {"gw0", "gw1"} and all(ran.values()), proc.stdout[-3000:]


@pytest.mark.skipif(_podman_reason() is not None, reason=_podman_reason() or "")
def test_the_image_collects_its_installed_catalog_by_pyargs():
    """What an ssh worker running in the image collects (docs/distributed.md): the catalog the
    wheel installed, named `--pyargs harness.c_fixtures` (a folder of data, so a namespace
    package), since xdist passes a name that is no path on the controller through unchanged."""
    proc = subprocess.run([*PODMAN, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
                           "--ulimit", "nproc=4096:4096", "--entrypoint", "/opt/leakharness/bin/python", IMAGE,
                           "-m", "pytest", "-p", "no:cacheprovider", "-o", "consider_namespace_packages=true",
                           "--pyargs", "harness.c_fixtures", "--leak-patterns", ",".join(PATTERNS),
                           "--leak-tools", TOOLS, "-rA", "-q"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = {line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("PASSED ")}
    assert passed == {item.removeprefix("catalog/") for item in ITEMS}


# --- the CI workflow and the Kubernetes example -------------------------------------------------

WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
K8S = REPO / "deploy" / "k8s" / "nightly-indexed-job.yaml"
NARROW = ("--pattern", "x509_name_oneline", "--pattern", "plain_double_free", "--tool", "memcheck", "--tool", "asan")


def _yaml():
    return pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml to check the YAML files)")


def _leakharness_env(tmp_path: Path) -> dict:
    """The checkout's `leakharness` first on PATH, and its harness first on PYTHONPATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def test_workflow_shards_merge_and_fail_as_described():
    yaml = _yaml()
    flow = yaml.safe_load(WORKFLOW.read_text())
    on = flow.get("on", flow.get(True))  # PyYAML reads the key `on` as the boolean true
    assert on["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # every night
    jobs = flow["jobs"]
    shards = int(flow["env"]["SHARDS"])
    shard = jobs["shard"]
    assert shard["strategy"]["matrix"]["shard"] == list(range(1, shards + 1))
    assert shard["strategy"]["fail-fast"] is False  # one failing part does not cancel the others
    run = next(s["run"] for s in shard["steps"] if "--shard" in s.get("run", ""))
    assert '--shard "${{ matrix.shard }}/$SHARDS"' in run and "--summary-md" in run and "--junit" in run
    assert "LEAKHARNESS_CACHE=/cache" in run and "--network none" in run
    uploads = [s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)  # a failed part still uploads
    merge = jobs["merge"]
    assert merge["if"] == "always()" and "shard" in merge["needs"]
    text = "\n".join(s.get("run", "") for s in merge["steps"])
    assert "report $parts --out /reports/merged" in text
    assert '>> "$GITHUB_STEP_SUMMARY"' in text
    outcome = merge["steps"][-1]
    assert outcome["if"] == "always()" and "needs.shard.result" in outcome["run"] and "exit 1" in outcome["run"]


def _jq_program() -> str:
    """The durations merge of the workflow's merge job, as written there."""
    yaml = _yaml()
    step = next(s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["merge"]["steps"]
                if s.get("name") == "tomorrow's durations")
    start = step["run"].index("jq -s '") + len("jq -s '")
    return step["run"][start:step["run"].index("'", start)]


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (GitHub's runners have it)")
def test_workflow_durations_every_shard_sees_the_same_and_each_measurement_is_kept(tmp_path):
    """As the workflow does it: one frozen durations.json copied into each shard's own cache and
    given to --durations, then tomorrow's file made by the merge job's jq program from the frozen
    one and each part's."""
    env = _leakharness_env(tmp_path)
    frozen = {}  # first night: none
    ran = {}
    for night in (1, 2):
        base = tmp_path / f"night{night}" / "durations.json"
        base.parent.mkdir()
        base.write_text(json.dumps(frozen))
        parts = []
        for k in (1, 2):
            cache = tmp_path / f"night{night}" / f"cache-{k}"
            cache.mkdir()
            shutil.copy(base, cache / "durations.json")
            out = tmp_path / f"night{night}" / f"shard-{k}"
            proc = subprocess.run(["leakharness", "run", *NARROW, "--shard", f"{k}/2", "--cache", str(cache),
                                   "--durations", str(cache / "durations.json"), "--run-id", f"night{night}",
                                   "--out", str(out), "--quiet"], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, env=env, timeout=300, start_new_session=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            jobs = json.loads((out / "results.json").read_text())["jobs"]
            ran[(night, k)] = {f"{j['pattern']}::{j['variant']}[{j['tool']}]": j["duration_s"] for j in jobs}
            parts.append(cache / "durations.json")
        # The two parts of a night are disjoint and together the whole run.
        one, two = ran[(night, 1)], ran[(night, 2)]
        assert not set(one) & set(two) and len(one) + len(two) == 8
        proc = subprocess.run(["jq", "-s", _jq_program(), str(base), *map(str, parts)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, start_new_session=True)
        assert proc.returncode == 0, proc.stderr
        frozen = json.loads(proc.stdout)
        # Tomorrow's durations: every job, each with what the shard that ran it measured.
        assert frozen == {name: round(d, 3) for name, d in {**one, **two}.items()}
    assert ran[(2, 1)] and ran[(2, 2)]  # the second night split by the first night's durations


def test_k8s_indexed_job_runs_each_shard_once_and_merges(tmp_path):
    """The manifest's commands, run here by `sh -c` as the pods would (JOB_COMPLETION_INDEX
    0..N-1, /reports standing for the volume), the catalog narrowed to two patterns."""
    yaml = _yaml()
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    job = next(d for d in docs if d["kind"] == "Job" and d["spec"].get("completionMode") == "Indexed")
    merge = next(d for d in docs if d["kind"] == "Job" and d is not job)
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    spec = job["spec"]
    n = spec["completions"]
    assert spec["parallelism"] == n
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["sh", "-c"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} == {pvc["metadata"]["name"]}
    assert container["volumeMounts"][0]["mountPath"] == "/reports"
    reports = tmp_path / "reports"
    reports.mkdir()
    env = _leakharness_env(tmp_path)
    script = container["args"][0]
    assert f'"$((JOB_COMPLETION_INDEX + 1))/{n}"' in script
    narrowed = script.replace("/reports", str(reports)) + " " + " ".join(NARROW) + " --quiet"
    for index in range(n):
        proc = subprocess.run(["sh", "-c", narrowed], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env={**env, "JOB_COMPLETION_INDEX": str(index),
                                   "LEAKHARNESS_CACHE": str(tmp_path / f"cache-{index}")},
                              timeout=300, start_new_session=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (reports / f"shard-{index + 1}" / "summary.md").is_file()
    merge_script = merge["spec"]["template"]["spec"]["containers"][0]["args"][0].replace("/reports", str(reports))
    proc = subprocess.run(["sh", "-c", merge_script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=300, start_new_session=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = json.loads((reports / "merged" / "results.json").read_text())["jobs"]
    names = [(j["pattern"], j["variant"], j["tool"]) for j in jobs]
    assert len(names) == len(set(names)) == 8
    assert (reports / "merged" / "index.html").is_file()
