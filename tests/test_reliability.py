"""Reliability of the command layer (issue 19): file modes, errors, run locks, option checks,
resume files, signals, progress off a terminal, workers that die with their parent."""
import os
import stat

import pytest
import torch

from stylenas.io import atomic_path, current_umask, dump_json


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, expected):
    from stylenas.train.checkpoint import save_checkpoint

    umask(mask)
    assert current_umask() == mask
    dump_json({"a": 1}, tmp_path / "genotype.json")
    save_checkpoint({"kind": "stylegan2", "G": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    with atomic_path(tmp_path / "sub" / "x.bin") as tmp:
        tmp.write_bytes(b"x")
    for name in ("genotype.json", "checkpoint.pt", "sub/x.bin"):
        assert mode(tmp_path / name) == expected, name
    assert mode(tmp_path / "sub") == expected | 0o111 & ~mask  # a new folder: rwx less the umask


def test_demo_lmdb_honours_the_umask(tmp_path, umask):
    from stylenas.datasets.demo import make_demo_data

    umask(0o022)
    make_demo_data(tmp_path / "d.lmdb", [8], 4)
    assert mode(tmp_path / "d.lmdb") == 0o755
    assert mode(tmp_path / "d.lmdb" / "data.mdb") == 0o644


# ---------------------------------------------------------------- shared set-up of the run tests

import errno  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from stylenas.cli import main as stylenas_main  # noqa: E402
from stylenas.datasets import make_demo_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--genotype", "stylegan2", "--resolution", "8", "--cfg", "tiny", "--batch", "4", "--mbstd-group", "2",
         "--device", "cpu", "--workers", "0"]
SEARCH = ["--preset", "tiny", "--device", "cpu", "--workers", "0", "--sample-every", "0"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [8, 16], 40, progress=False)
    return path


def subprocess_env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get(
        "PYTHONPATH", ""), **extra}


def command(*args):
    return [sys.executable, "-m", "stylenas", *map(str, args)]


def run(*args, **extra_env):
    return subprocess.run(command(*args), capture_output=True, text=True, env=subprocess_env(**extra_env), timeout=600)


def invoke(*args):
    return CliRunner().invoke(stylenas_main, [str(a) for a in args])


def one_error_line(result):
    """The single 'Error: ...' line of a failed CliRunner run (and no traceback)."""
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def wait_for(path, proc, seconds=300):
    deadline = time.time() + seconds
    while not Path(path).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert Path(path).exists(), f"{path} never appeared (exit {proc.poll()})"


def resume_line(stderr):
    """The command line printed after 'Resume with:'."""
    lines = stderr.splitlines()
    index = next(i for i, line in enumerate(lines) if "Resume with:" in line)
    return shlex.split(lines[index + 1])


def rerun(argv):
    """Run a printed 'python -m stylenas ...' command line with this interpreter."""
    assert argv[:3] == ["python", "-m", "stylenas"], argv
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, env=subprocess_env(),
                          timeout=600)


def run_ok(*args, **extra_env):
    result = run(*args, **extra_env)
    assert result.returncode == 0, result.stderr
    return result


def sigterm_once(args, out, ready, while_running=None):
    """Start ``stylenas args --outdir out``, send it SIGTERM once ``out/ready`` exists (after
    ``while_running(proc)``) and return its stderr; it must exit 143."""
    proc = subprocess.Popen(command(*args, "--outdir", out), env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / ready, proc)
    if while_running is not None:
        while_running(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    return stderr


def resume_printed(stderr):
    """Run the resume command line a stopped run printed; it must succeed."""
    resumed = rerun(resume_line(stderr))
    assert resumed.returncode == 0, resumed.stderr
    return resumed


def same_nested(a, b):
    """Assert equal nested dicts/lists of tensors and numbers; returns the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
        return 1
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return sum(same_nested(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return sum(same_nested(x, y) for x, y in zip(a, b))
    assert a == b
    return 0


def same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- signals, locks, stale files, resume

@pytest.mark.slow
def test_sigterm_checkpoints_train_and_resume_equals_an_uninterrupted_run(demo, tmp_path):
    args = ["--data", demo, *TRAIN, "--kimg", "0.24", "--snap", "0.04"]  # 60 steps, a snapshot every 10
    run_ok("train", *args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"

    def second_run_is_refused(proc):  # a second run into the busy folder fails at once, naming it and the process
        line = one_error_line(invoke("train", *args, "--outdir", out))  # in this process: quick to start
        assert line.startswith(f"Error: {out}: another run is writing this folder (pid {proc.pid}: ")

    stderr = sigterm_once(["train", *args], out, "checkpoint.pt", while_running=second_run_is_refused)
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 0.04 <= state["counters"]["kimg"] < 0.24  # stopped before the end, with a checkpoint of that step
    # a SIGKILL during a checkpoint write leaves a temporary file: the next run under the lock removes it
    stale = out / ".checkpoint.pt.k1ll3d.pt.tmp"
    stale.write_bytes(b"x" * 1000)
    resumed = resume_printed(stderr)
    assert not stale.exists() and "removed 1 temporary file(s)" in resumed.stderr
    a, b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True), torch.load(
        out / "checkpoint.pt", weights_only=True)
    for net in ("G", "D", "G_ema"):
        same_tensors(a[net], b[net])
    assert a["counters"] == b["counters"]


@pytest.mark.slow
def test_sigterm_checkpoints_the_search_and_resume_equals_an_uninterrupted_run(demo, tmp_path):
    args = ["--data", demo, "--resolution", "16", *SEARCH, "--iters", "12", "--checkpoint-every", "2"]
    run_ok("search", *args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"

    def second_run_is_refused(proc):
        assert f"(pid {proc.pid}: " in one_error_line(invoke("search", *args, "--outdir", out))

    stderr = sigterm_once(["search", *args], out, "search-state.pt", while_running=second_run_is_refused)
    stopped_at = torch.load(out / "search-state.pt", weights_only=True)["searcher"]
    resumed = resume_printed(stderr)
    assert "resumed" in resumed.stderr
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert a["train_step"] == b["train_step"] and a["val_step"] == b["val_step"]
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text())["layers"] == json.loads(
        (out / "genotype.json").read_text())["layers"]
    for key in ("G", "D"):
        same_tensors(a["searcher"][key], b["searcher"][key])
    assert stopped_at is not None
    iterations = [json.loads(line)["iteration"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert iterations == list(range(1, 13))  # one line per iteration, none twice


@pytest.mark.slow
def test_the_stylegan2_search_refuses_several_processes_and_continues_after_a_torchrun_restart(demo, tmp_path):
    """The search is one process: under torchrun with 2 it says so before writing anything. A process
    torchrun starts again (TORCHELASTIC_RESTART_COUNT > 0, the first command line) continues from the
    state a SIGKILLed attempt left and ends as an uninterrupted run."""
    args = ["--data", demo, "--resolution", "16", *SEARCH, "--iters", "6", "--checkpoint-every", "2"]
    refused = run("search", *args, "--outdir", tmp_path / "many", WORLD_SIZE="2", RANK="0")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "the StyleGAN2 search runs in one process" in refused.stderr and "torchrun started 2" in refused.stderr
    assert not (tmp_path / "many").exists()
    run_ok("search", *args, "--outdir", tmp_path / "straight")
    out = tmp_path / "killed"
    proc = subprocess.Popen(command("search", *args, "--outdir", out), env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / "search-state.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=300)
    assert torch.load(out / "search-state.pt", weights_only=True)["searcher"] is not None
    again = run("search", *args, "--outdir", out, TORCHELASTIC_RESTART_COUNT="1")  # no --resume
    assert again.returncode == 0, again.stderr
    assert f"resumed {out} at iteration" in again.stderr
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert a["train_step"] == b["train_step"] and a["val_step"] == b["val_step"]
    for key in ("G", "D"):
        same_tensors(a["searcher"][key], b["searcher"][key])


def test_a_second_signal_stops_at_once():
    from stylenas.runs import StopSignals

    lines = []
    with StopSignals(lines.append) as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested() and stop.signum == signal.SIGINT and "SIGINT received" in lines[0]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    with StopSignals(lines.append) as stop:  # SIGTERM, then the SIGTERM torchrun passes on: keep stopping
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_fresh_search_never_appends_to_an_earlier_log(demo, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    # what a search killed before its first checkpoint left: a log, no state
    (out / "log.jsonl").write_text(json.dumps({"iteration": 1, "left_by": "a killed run"}) + "\n")
    result = invoke("search", "--data", demo, "--outdir", out, "--resolution", "16", *SEARCH, "--iters", "1")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and "left_by" not in lines[0]


def test_a_busy_lmdb_output_is_refused_at_once(tmp_path):
    out = tmp_path / "d.lmdb"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from stylenas.datasets.store import LMDBWriter\n"
                               "w = LMDBWriter(sys.argv[1], [8]); print('open', flush=True); time.sleep(120)",
                               str(out)], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        for args in (["make-demo-data", "--out", out, "--size", "8", "--num", "2"],
                     ["make-demo-data", "--out", out, "--size", "8", "--num", "2", "--force"]):
            line = one_error_line(invoke(*args))
            assert f"{out}: another run is writing this folder (pid {holder.pid}: " in line
    finally:
        holder.kill()
        holder.wait()
    assert invoke("make-demo-data", "--out", out, "--size", "8", "--num", "2").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lmdb"]  # no lock or temporary left beside it


def test_a_damaged_or_foreign_search_state_is_one_line(demo, tmp_path):
    out = tmp_path / "s"
    args = ["search", "--data", demo, "--outdir", out, "--resolution", "16", *SEARCH, "--checkpoint-every", "1"]
    assert invoke(*args, "--iters", "2").exit_code == 0
    state, previous = out / "search-state.pt", out / "search-state-previous.pt"
    assert torch.load(previous, weights_only=True)["searcher"]["iterations_done"] == 1
    good = state.read_bytes()
    for damage in (good[: len(good) // 2], b"not a torch file", None):
        if damage is None:  # a foreign file: a training checkpoint under the state's name
            torch.save({"kind": "stylegan2", "G": {}, "D": {}}, state)
        else:
            state.write_bytes(damage)
        line = one_error_line(invoke(*args, "--iters", "3", "--resume"))
        assert f"{state}:" in line and f"the previous state {previous} can be used instead" in line
    shutil.copy(previous, state)  # what the message says to do
    result = invoke(*args, "--iters", "3", "--resume")
    assert result.exit_code == 0 and "resumed" in result.output and "iteration 1" in result.output


# ---------------------------------------------------------------- options checked before any file

def test_bad_options_are_refused_before_anything_is_written(demo, tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (16, 16), "red").save(src / "a.png")
    out = tmp_path / "out"
    cases = [
        (["search", "--data", demo, "--outdir", out, *SEARCH, "--channel-mult", "0"], "--channel-mult"),
        (["search", "--data", demo, "--outdir", out, *SEARCH, "--workers", "-1"], "--workers"),
        (["train", "--data", demo, "--outdir", out, *TRAIN, "--metrics", "fid50k_full", "--fid-num", "0"],
         "--fid-num"),
        (["train", "--data", demo, "--outdir", out, *TRAIN[:-2], "--workers", "-1"], "--workers"),
        (["make-demo-data", "--out", out, "--size", "8", "--quality", "0"], "--quality"),
        (["make-demo-data", "--out", out, "--size", "8", "--num", "0"], "--num"),
        (["make-demo-data", "--out", out, "--size", "20"], "--size 20"),
        (["prepare-data", src, "--out", out, "--size", "100"], "--size 100"),
        (["prepare-data", src, "--out", out, "--size", "8", "--quality", "101"], "--quality"),
    ]
    for args, option in cases:
        result = invoke(*args)
        assert result.exit_code != 0, args
        assert option in result.output and "Traceback" not in result.output, (args, result.output)
        assert not out.exists(), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_generate_refuses_repeated_seeds_and_writes_long_lists_with_progress(demo, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert invoke("train", "--data", demo, "--outdir", run_dir, *TRAIN, "--kimg", "0.004",
                  "--snap", "0.004").exit_code == 0
    out = tmp_path / "images"
    line = one_error_line(invoke("generate", "--ckpt", run_dir / "checkpoint.pt", "--seeds", "0,0,1",
                                 "--outdir", out, "--device", "cpu"))
    assert "--seeds: 0 given more than once" in line and not out.exists()
    monkeypatch.setenv("STYLENAS_PROGRESS_SECONDS", "0")
    result = invoke("generate", "--ckpt", run_dir / "checkpoint.pt", "--seeds", "0-39", "--outdir", out,
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"seed{i:04d}.png" for i in range(40)]
    assert "40 images of" in result.output
    progress = [line for line in result.output.splitlines() if line.startswith(f"generate {out}: ")]
    assert progress[0].startswith(f"generate {out}: 16/40 images (40%)") and "ETA" in progress[0]
    assert progress[-1].startswith(f"generate {out}: 40/40 images (100%)")


# ---------------------------------------------------------------- progress off a terminal

def test_long_loops_print_plain_progress_lines_off_a_terminal(demo, tmp_path):
    """stderr is a file here (as in a SLURM log): plain lines, no bar, one per interval (0 s here)."""
    from helpers import write_weights
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(src / f"{i}.png")
    runs = {
        "search": (["search", "--data", demo, "--outdir", tmp_path / "s", "--resolution", "16", *SEARCH,
                    "--iters", "3"], "alphaGAN search: 2/3 iterations (67%)"),
        "prepare": (["prepare-data", src, "--out", tmp_path / "p.lmdb", "--size", "8", "--workers", "1"],
                    f"prepare {tmp_path / 'p.lmdb'}: 3/5 images (60%)"),
        "demo": (["make-demo-data", "--out", tmp_path / "d.lmdb", "--size", "8", "--num", "4"],
                 f"demo {tmp_path / 'd.lmdb'}: 2/4 images (50%)"),
        "train": (["train", "--data", demo, "--outdir", tmp_path / "t", *TRAIN, "--kimg", "0.012", "--snap", "0.012"],
                  "kimg 0.004/0.012 (33%)"),
        "fid": (["fid", demo, demo, "--num", "4", "--num-ref", "4", "--batch", "2", "--resolution", "8",
                 "--inception", write_weights(tmp_path / "weights"), "--device", "cpu"],
                "A: Inception features: 2/4 images (50%)"),
    }
    for name, (args, expected) in runs.items():
        with open(tmp_path / f"{name}.log", "w") as log:
            done = subprocess.run(command(*args), stdout=log, stderr=subprocess.STDOUT, timeout=600,
                                  env=subprocess_env(STYLENAS_PROGRESS_SECONDS="0"))
        text = (tmp_path / f"{name}.log").read_text()
        assert done.returncode == 0, text
        assert expected in text and "ETA" in text, (name, text)
        assert "\r" not in text and "[####" not in text, name  # no bar redrawn in a log file
        lines = [line for line in text.splitlines() if " images (" in line or " iterations (" in line]
        assert len(lines) == len(set(lines)), (name, text)  # no progress line said twice


# ---------------------------------------------------------------- OSError: one line naming the path

def test_a_full_disk_names_the_file_and_the_checkpoint_kept(demo, tmp_path, monkeypatch):
    """The n-th torch.save fails as a full disk does (ENOSPC from the file's write)."""
    real_save, calls = torch.save, []

    def save_until_full(obj, file, *args, **kwargs):
        calls.append(file)
        if len(calls) > 2:  # the first snapshot and checkpoint.pt fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    out = tmp_path / "t"
    line = one_error_line(invoke("train", "--data", demo, "--outdir", out, *TRAIN, "--kimg", "0.008",
                                 "--snap", "0.004"))
    assert line == (f"Error: {out / 'network-snapshot-000000.008.pt'}: No space left on device (the disk is full; "
                    f"the last complete checkpoint {out / 'checkpoint.pt'} is kept: free some space and rerun with "
                    f"--resume)")
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    calls.clear()
    out = tmp_path / "s"
    line = one_error_line(invoke("search", "--data", demo, "--outdir", out, "--resolution", "16", *SEARCH,
                                 "--iters", "4", "--checkpoint-every", "1"))
    assert line.startswith(f"Error: {out / 'search-state.pt'}: No space left on device (the disk is full; the last "
                           f"complete checkpoint {out / 'search-state.pt'} is kept")
    assert torch.load(out / "search-state.pt", weights_only=True)["searcher"]["iterations_done"] == 2


def private_mounts():
    """Whether this process may mount a tmpfs in a private mount namespace (root with CAP_SYS_ADMIN)."""
    if not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, timeout=30)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


RUNNER = """import json, subprocess, sys
cases = json.loads(sys.argv[1])
results = {name: subprocess.run([sys.executable, "-m", "stylenas", *args], capture_output=True, text=True).__dict__
           for name, args in cases.items()}
json.dump({k: {"rc": v["returncode"], "stderr": v["stderr"]} for k, v in results.items()}, open(sys.argv[2], "w"))
"""


@pytest.mark.slow
def test_read_only_and_full_filesystems_give_one_line(demo, tmp_path):
    """Real filesystems in a private mount namespace: a read-only tmpfs and a 64 kB one (root ignores
    permissions, a read-only mount it does not)."""
    if not private_mounts():
        pytest.skip("cannot mount a tmpfs in a private namespace here (unshare -m needs CAP_SYS_ADMIN)")
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (16, 16), "red").save(src / "a.png")
    assert invoke("train", "--data", demo, "--outdir", tmp_path / "run", *TRAIN, "--kimg", "0.004",
                  "--snap", "0.004").exit_code == 0
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir(), full.mkdir()
    cases = {
        "search": ["search", "--data", demo, "--outdir", ro / "s", "--resolution", "16", *SEARCH, "--iters", "1"],
        "train": ["train", "--data", demo, "--outdir", ro / "t", *TRAIN, "--kimg", "0.004", "--snap", "0.004"],
        "generate": ["generate", "--ckpt", tmp_path / "run" / "checkpoint.pt", "--outdir", ro / "g", "--device", "cpu"],
        "prepare-data": ["prepare-data", src, "--out", ro / "p.lmdb", "--size", "8"],
        "make-demo-data": ["make-demo-data", "--out", ro / "d.lmdb", "--size", "8", "--num", "2"],
        "full-demo": ["make-demo-data", "--out", full / "d.lmdb", "--size", "32", "--num", "400", "--format", "png"],
        "full-train": ["train", "--data", demo, "--outdir", full / "t", *TRAIN, "--kimg", "0.004", "--snap", "0.004"],
    }
    cases = {k: [str(a) for a in v] for k, v in cases.items()}
    (tmp_path / "runner.py").write_text(RUNNER)
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && mount -t tmpfs -o size=64k tmpfs {full} && "
              f"{shlex.quote(sys.executable)} {tmp_path / 'runner.py'} {shlex.quote(json.dumps(cases))} "
              f"{tmp_path / 'results.json'} && ls -A {full} > {tmp_path / 'left.txt'} && "
              f"find {full} -name '*.tmp*' > {tmp_path / 'temporaries.txt'}")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                          text=True, env=subprocess_env(), timeout=900)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for name, result in results.items():
        lines = result["stderr"].strip().splitlines()
        assert result["rc"] == 1 and "Traceback" not in result["stderr"], (name, result["stderr"])
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1, (name, lines)
        if name.startswith("full"):
            assert f"Error: {full}/" in errors[0] and "No space left on device" in errors[0], errors[0]
            assert "the disk is full" in errors[0] or "nothing was written" in errors[0], errors[0]
        else:
            assert errors[0].startswith(f"Error: {ro}") and errors[0].endswith("Read-only file system"), errors[0]
    # nothing half-written: no temporary file or folder; the LMDB left nothing, the run only its folder
    assert (tmp_path / "left.txt").read_text().split() == ["t"]
    assert (tmp_path / "temporaries.txt").read_text() == ""


# ---------------------------------------------------------------- workers die with their parent

def children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid):
    """Running (not a zombie waiting to be reaped by a container's init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_when_the_main_process_is_killed(demo, tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(src / f"{i:02d}.png")
    prepare = ("import sys, time\n"
               "from stylenas.datasets import prepare\n"
               "real = prepare.process_image\n"
               "def slow(*args):\n"
               "    time.sleep(0.5)\n"  # decoding slowed down so the run is caught in the middle
               "    return real(*args)\n"
               "prepare.process_image = slow\n"
               f"prepare.prepare_data({str(src)!r}, {str(tmp_path / 'out.lmdb')!r}, [8], workers=2, progress=False)\n")
    loader = ("import time\n"
              "from stylenas.datasets import LMDBImages, TrainingLoader\n"
              f"batches = TrainingLoader(LMDBImages({str(demo)!r}), 2, num_workers=2)\n"
              "next(batches)\n"
              "time.sleep(300)\n")
    for script, workers in ((prepare, 2), (loader, 2)):
        main = subprocess.Popen([sys.executable, "-c", script], env=subprocess_env())
        deadline = time.time() + 120
        while len(children(main.pid)) < workers and main.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the workers are busy now
        started = children(main.pid)
        assert len(started) >= workers and main.poll() is None, started
        main.send_signal(signal.SIGKILL)
        main.wait()
        time.sleep(5)
        survivors = [pid for pid in started if alive(pid)]
        for pid in survivors:  # clean up before failing
            os.kill(pid, signal.SIGKILL)
        assert survivors == [], f"{len(survivors)} worker(s) outlived their killed parent"


def without_timings(state):
    """A dggan-state.json without the seconds each candidate took (the only field two runs may differ in)."""
    return {**state, "candidates": [{k: v for k, v in r.items() if k != "seconds"} for r in state["candidates"]]}


@pytest.mark.slow
def test_sigterm_stops_a_dggan_search_after_the_current_child_and_resume_equals_an_uninterrupted_run(tmp_path):
    """p = 1, K = 1: 1 + 5 + 3 candidates in 3 steps; SIGTERM once the first child of step 1 is on disk."""
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 24, image_format="png", progress=False)
    args = ["search-conventional", "--method", "dggan", "--data", data, "--preset", "tiny", "--proxy", "--device",
            "cpu", "--iters", "2", "--max-steps", "2", "--final-iters", "2", "--top-k", "1", "--p", "1",
            "--max-grown", "1"]
    run_ok(*args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"
    stderr = sigterm_once(args, out, "candidates/c00001.pt")
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    stopped = json.loads((out / "dggan-state.json").read_text())
    assert stopped["step"] < 2 and stopped["final"] is None  # stopped inside the search
    resume_printed(stderr)
    a = json.loads((tmp_path / "straight" / "dggan-state.json").read_text())
    b = json.loads((out / "dggan-state.json").read_text())
    assert len(a["candidates"]) == 9 and without_timings(a) == without_timings(b)
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text()) == json.loads(
        (out / "genotype.json").read_text())
    final_a, final_b = (torch.load(d / "final.pt", weights_only=True) for d in (tmp_path / "straight", out))
    for net in ("G", "D"):
        same_tensors(final_a[net], final_b[net])
    assert len((out / "log.jsonl").read_text().splitlines()) == 9


# ---------------------------------------------------------------- elastic restarts under torchrun

def torchrun_twice(script, args, tmp_path, ready):
    """``script args`` under ``torchrun --nproc_per_node 2`` into ``tmp_path/straight`` (no restarts)
    and into ``tmp_path/killed`` with ``--max-restarts 1``, where one worker is SIGKILLed as soon as
    ``killed/<ready>`` exists. Returns the killed run's stderr; both runs must succeed."""
    def torchrun(out, restarts):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "--max-restarts", str(restarts), str(ROOT / "scripts" / script), *map(str, args),
                "--outdir", str(out)]

    straight = subprocess.run(torchrun(tmp_path / "straight", 0), capture_output=True, text=True,
                              env=subprocess_env(), timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    out = tmp_path / "killed"
    agent = subprocess.Popen(torchrun(out, 1), env=subprocess_env(), text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    wait_for(out / ready, agent)
    workers = children(agent.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = agent.communicate(timeout=600)
    assert agent.returncode == 0, stderr[-3000:]
    # the kill really cost the first group: torchrun started a second one
    assert "closing signal SIGTERM" in stderr or "exitcode: -9" in stderr, stderr[-3000:]
    return stderr


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_the_run_ends_as_an_uninterrupted_one(demo, tmp_path):
    """2 gloo processes under torchrun --max-restarts 1; one is SIGKILLed after the first checkpoint:
    the group restarts, resumes from checkpoint.pt and ends with an uninterrupted run's weights.
    (torchrun's agent store outlives the restart: without per-attempt keys the new gloo group reads
    the dead worker's address, pytorch/pytorch#135712.)"""
    args = ["--data", demo, *TRAIN, "--kimg", "0.064", "--snap", "0.008"]
    stderr = torchrun_twice("train_stylegan2.py", args, tmp_path, "checkpoint.pt")
    out = tmp_path / "killed"
    assert f"resumed {out / 'checkpoint.pt'} at kimg" in stderr  # the restarted group continued
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert a["counters"] == b["counters"]
    for net in ("G", "D", "G_ema"):
        same_tensors(a[net], b[net])


@pytest.mark.slow
def test_torchrun_restarts_a_killed_agan_worker_and_the_search_ends_as_an_uninterrupted_one(tmp_path):
    """The same for a conventional search: 2 gloo processes spread AGAN's children; one is SIGKILLed
    after the first controller update's state: the restarted group resumes from search-state.pt."""
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 32, image_format="png", progress=False)
    args = ["--method", "agan", "--data", data, "--preset", "tiny", "--proxy", "--iters", "3", "--reward-num", "4",
            "--device", "cpu"]
    stderr = torchrun_twice("search_conventional.py", args, tmp_path, "search-state.pt")
    out = tmp_path / "killed"
    assert f"resumed {out} after " in stderr  # the restarted group continued from the state
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert a["done"] == b["done"] == 3
    assert same_nested(a["controller"], b["controller"]) > 0 and a["best"] == b["best"]
    assert same_nested(a["ctrl_opt"], b["ctrl_opt"]) > 0 and a["baseline"] == b["baseline"]
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text()) == json.loads(
        (out / "genotype.json").read_text())
    assert len((out / "log.jsonl").read_text().splitlines()) == 3  # one line per update, none twice


@pytest.mark.slow
def test_torchrun_restarts_a_killed_dggan_worker_and_the_search_ends_as_an_uninterrupted_one(tmp_path):
    """DGGAN's children spread over 2 gloo processes; one is SIGKILLed once the first child of step 1 is
    on disk: the restarted group continues from dggan-state.json and ends with the same candidates,
    genotype and final weights."""
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 24, image_format="png", progress=False)
    args = ["--method", "dggan", "--data", data, "--preset", "tiny", "--proxy", "--device", "cpu", "--iters", "2",
            "--max-steps", "2", "--final-iters", "2", "--top-k", "1", "--sample-p", "1", "--max-grown", "1"]
    stderr = torchrun_twice("search_conventional.py", args, tmp_path, "candidates/c00001.pt")
    a = json.loads((tmp_path / "straight" / "dggan-state.json").read_text())
    b = json.loads((tmp_path / "killed" / "dggan-state.json").read_text())
    assert len(a["candidates"]) == 9 and without_timings(a) == without_timings(b), stderr[-3000:]
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text()) == json.loads(
        (tmp_path / "killed" / "genotype.json").read_text())
    final_a, final_b = (torch.load(d / "final.pt", weights_only=True) for d in (tmp_path / "straight",
                                                                                tmp_path / "killed"))
    for net in ("G", "D"):
        same_tensors(final_a[net], final_b[net])


def test_every_option_of_the_torchrun_commands_passes_torchruns_parser():
    """torchrun's argparse reads the script's options too and stops on an ambiguous abbreviation of
    its own (``--p``: ``--print-completion``): each option has a spelling it lets through."""
    import click
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    context = click.Context(stylenas_main)
    refused = {}
    for name in ("train", "search", "train-conventional", "search-conventional", "compare"):
        for param in stylenas_main.get_command(context, name).params:
            spellings = [opt for opt in param.opts + param.secondary_opts if opt.startswith("--")]
            passing = []
            for opt in spellings:
                try:
                    parser.parse_args(["--standalone", "x.py", opt, "1"])
                    passing.append(opt)
                except SystemExit:
                    pass
            if spellings and not passing:
                refused[f"{name} {spellings}"] = True
    assert not refused, sorted(refused)


# ---------------------------------------------------------------- the conventional commands

@pytest.mark.slow
def test_conventional_runs_own_their_folder_and_refuse_foreign_states(demo, tmp_path):
    from stylenas.runs import RunFolder

    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 24, image_format="png", progress=False)
    search = ["search-conventional", "--method", "alphagan", "--data", data, "--preset", "tiny", "--iters", "1",
              "--device", "cpu"]
    train = ["train-conventional", "--genotype", "autogan_a", "--data", data, "--preset", "tiny", "--steps", "1",
             "--device", "cpu"]
    for args in (search, train):
        out = tmp_path / args[0]
        with RunFolder(out):  # another run holds the folder
            line = one_error_line(invoke(*args, "--outdir", out))
            assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the refused run wrote nothing
        assert line.startswith(f"Error: {out}: another run is writing this folder (pid {os.getpid()}: ")
        assert not out.exists()  # the holder made the folder and left it empty: it removed it
        # an option refused inside the run leaves no folder behind
        one_error_line(invoke(*args, "--outdir", out, "--resolution", "12"))
        assert not out.exists()
    out = tmp_path / "s"
    assert invoke(*search, "--outdir", out).exit_code == 0
    stale = out / ".search-state.pt.x1y2.tmp"  # what a kill during a state write leaves
    stale.write_bytes(b"x")
    torch.save({"kind": "stylegan2", "G": {}}, out / "search-state.pt")  # a foreign file under the state's name
    line = one_error_line(invoke(*search, "--outdir", out, "--iters", "2", "--resume"))
    assert line.startswith(f"Error: --resume: {out / 'search-state.pt'}: not a state written by")
    assert not stale.exists()  # removed under the lock, before the run read anything


@pytest.mark.slow
def test_sigterm_checkpoints_a_conventional_search_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 24, image_format="png", progress=False)
    args = ["search-conventional", "--method", "alphagan", "--data", data, "--preset", "tiny", "--iters", "3",
            "--device", "cpu"]
    run_ok(*args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"
    stderr = sigterm_once(args, out, "search-state.pt")
    resume_printed(stderr)
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text())["cells"] == json.loads(
        (out / "genotype.json").read_text())["cells"]
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text())["arch_parameters"] == json.loads(
        (out / "genotype.json").read_text())["arch_parameters"]
    assert same_nested(a["method"], b["method"]) > 10  # every weight, alpha and optimiser moment
    assert len((out / "log.jsonl").read_text().splitlines()) == 3  # one line per iteration, none twice


@pytest.mark.slow
def test_sigterm_checkpoints_train_conventional_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 32, image_format="png", progress=False)
    args = ["train-conventional", "--genotype", "alphagan_s", "--data", data, "--preset", "tiny", "--steps", "60",
            "--snap", "2", "--device", "cpu"]
    run_ok(*args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"
    stderr = sigterm_once(args, out, "checkpoint.pt")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["counters"]["step"] < 60
    resume_printed(stderr)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert a["counters"] == b["counters"]
    for net in ("G", "D", "G_ema"):
        same_tensors(a[net], b[net])


@pytest.mark.slow
def test_sigterm_checkpoints_an_agan_search_and_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 32, image_format="png", progress=False)
    args = ["search-conventional", "--method", "agan", "--data", data, "--preset", "tiny", "--proxy", "--iters", "6",
            "--reward-num", "4", "--device", "cpu"]
    run_ok(*args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"
    stderr = sigterm_once(args, out, "search-state.pt")
    assert torch.load(out / "search-state.pt", weights_only=True)["done"] < 6
    resume_printed(stderr)
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert a["done"] == b["done"] == 6
    assert same_nested(a["controller"], b["controller"]) > 0 and a["best"] == b["best"]
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text())["generator"] == json.loads(
        (out / "genotype.json").read_text())["generator"]


@pytest.mark.slow
def test_sigterm_checkpoints_an_autogan_search_and_resume_equals_an_uninterrupted_run(tmp_path):
    """AutoGAN's shared-G/controller loop stops after the iteration it is in, with its state on disk."""
    data = tmp_path / "d16.lmdb"
    make_demo_data(data, [16], 32, image_format="png", progress=False)
    args = ["search-conventional", "--method", "autogan", "--data", data, "--preset", "tiny", "--proxy", "--iters",
            "5", "--device", "cpu"]
    run_ok(*args, "--outdir", tmp_path / "straight")
    out = tmp_path / "stopped"
    stderr = sigterm_once(args, out, "search-state.pt")
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    assert torch.load(out / "search-state.pt", weights_only=True)["search"]["counters"]["iteration"] < 5
    resume_printed(stderr)
    a = torch.load(tmp_path / "straight" / "search-state.pt", weights_only=True)
    b = torch.load(out / "search-state.pt", weights_only=True)
    assert a["search"]["counters"]["iteration"] == 5
    assert same_nested(a["search"], b["search"]) > 0
    assert json.loads((tmp_path / "straight" / "genotype.json").read_text()) == json.loads(
        (out / "genotype.json").read_text())
